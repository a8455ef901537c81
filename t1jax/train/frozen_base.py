"""The frozen base weights of a LoRA run: chosen at its first start (rl.init_from or
sft.init_from, else fresh weights from the seed), kept in the run directory before any
checkpoint (runtime/lora_run.py), and read from there on every later start."""

from __future__ import annotations

import pathlib

from t1jax.errors import CheckpointError
from t1jax.runtime.lora_run import BASE_DIR, read_base, save_base
from t1jax.runtime.run_dir import load_run
from t1jax.train.state import StateLayout


def frozen_base(layout: StateLayout, workdir: pathlib.Path, config, init_from: str, key: str, resuming: bool):
    """The base of the LoRA run in `workdir` (None without LoRA). resuming: the run has a
    checkpoint, so its base must be the one it kept; else it is the one kept by an earlier start
    that saved no checkpoint yet, or the weights of `init_from` (any run: one with LoRA gives
    its merged weights; errors name `key`), or fresh ones, then kept."""
    if not layout.lora:
        return None
    base = read_base(workdir, layout.params_layout)
    if base is not None:
        return base
    if resuming:
        raise CheckpointError(f"{workdir} has LoRA checkpoints but not their base weights ({workdir / BASE_DIR})")
    if init_from:
        base = load_run(init_from, config=config, layout=layout.params_layout, key=key)[1]
    else:
        base = layout.init_params(config.run.seed)
    save_base(workdir, base)
    return base
