"""What a LoRA run (model.lora_rank > 0) keeps besides an ordinary run directory, and how its
weights are read back:

    <run>/lora_base/0        the frozen base weights, written once at the run's first start
                             (before any checkpoint), so the run resumes and is read on its own
    <run>/checkpoints/<step> the adapters (SFT: a train state of adapters; RL: policy and anchor)

Every reader gets the merged parameters, a plain model: run_dir.load_params hands a LoRA run to
`merged_params`.
"""

from __future__ import annotations

import pathlib

import jax

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.config import ModelConfig
from t1jax.errors import CheckpointError
from t1jax.model import lora
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.layout import ParamsLayout, make_params_layout

BASE_DIR = "lora_base"


def save_base(run_dir: str | pathlib.Path, params: dict) -> None:
    """Writes the base weights of a LoRA run, synchronously and with checksums."""
    with Checkpointer(str(pathlib.Path(run_dir) / BASE_DIR), max_to_keep=1, async_save=False) as checkpointer:
        checkpointer.save(0, {"params": params}, force=True)
        checkpointer.wait()


def read_base(run_dir: str | pathlib.Path, layout: ParamsLayout) -> dict | None:
    """The base weights the run kept, placed with `layout` (a model without LoRA in the run's
    own form and dtype); None if it kept none."""
    directory = pathlib.Path(run_dir) / BASE_DIR
    if not directory.is_dir():
        return None
    with Checkpointer(str(directory), create=False) as checkpointer:
        return checkpointer.restore_params(layout.abstract_params())


def merged_params(run_dir, checkpoints: pathlib.Path, saved: ModelConfig, layout, step: int | None, key: str) -> dict:
    """The parameters of the LoRA run `run_dir` (its checkpoints in `checkpoints`), whose model
    is `saved`, at `step` (default: the latest): its base with that step's adapters merged in (the
    policy's, for RL), placed with the shardings of `layout` (a ParamsLayout or a train
    StateLayout) in its dtype and form (scanned or not). Errors name the config key or flag `key`
    that pointed at the run."""
    # read both in the form and dtype the run saved (the checksums are of those bits)
    saved_layout = make_params_layout(lora.base_model(saved), layout.mesh, layout.rules, divisible_only=True)
    base = read_base(run_dir, saved_layout)
    if base is None:
        raise CheckpointError(
            f"{key}={run_dir} is a LoRA run (model.lora_rank {saved.lora_rank}) without its base weights "
            f"({pathlib.Path(run_dir) / BASE_DIR} is missing)"
        )
    shapes = lora.abstract_adapters(saved)
    shardings = parallel.tree_shardings(
        shapes, lora.adapter_logical_axes(saved), layout.rules, layout.mesh, divisible_only=True
    )
    target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
    with Checkpointer(str(checkpoints), create=False) as checkpointer:
        adapters = checkpointer.restore_params(target, step)
    if adapters is None:
        raise CheckpointError(f"{key}={run_dir}: no checkpoint in {checkpoints}")
    wanted = layout.abstract_params()
    change_form = saved.scans_layers != layout.model_config.scans_layers

    def merged(base, adapters):
        params = lora.merge(saved, base, adapters)
        if change_form:
            params = (model_lib.unstack_layers if saved.scans_layers else model_lib.stack_layers)(params)
        return jax.tree.map(lambda x, s: x.astype(s.dtype), params, wanted)

    out_shardings = jax.tree.map(lambda s: s.sharding, wanted)
    # the base's buffers become the merged params' where they can (not across a change of form)
    donate = () if change_form else 0
    return jax.jit(merged, out_shardings=out_shardings, donate_argnums=donate)(base, adapters)
