"""Loading the policy weights of an SFT or RL run for evaluation."""

from __future__ import annotations

import pathlib

from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import CheckpointError
from t1jax.train.checkpoint import Checkpointer
from t1jax.train.state import layout_from_config


def load_policy(config, run_dir: str, step: int | None = None, layout=None):
    """(params, layout) of `run_dir`'s checkpoint at `step` (default: the latest).

    SFT checkpoints hold a train state, RL checkpoints {"policy": state, "anchor": params};
    either is read onto the mesh of `layout` (default: the one `config` describes).
    """
    layout = layout or layout_from_config(config, 1)
    directory = pathlib.Path(run_dir) / "checkpoints"
    with Checkpointer(str(directory), create=False) as checkpointer:
        params = checkpointer.restore_params(layout.abstract_state().params, step)
    if params is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    return params, layout


def checkpoint_steps(run_dir: str) -> list[int]:
    with Checkpointer(str(pathlib.Path(run_dir) / "checkpoints"), create=False) as checkpointer:
        return sorted(checkpointer.all_steps())


def load_tokenizer(config, run_dir: str) -> Tokenizer:
    path = config.sft.tokenizer_path or str(pathlib.Path(run_dir) / "tokenizer.model")
    if not pathlib.Path(path).is_file():
        raise CheckpointError(f"no tokenizer at {path}; set sft.tokenizer_path")
    return Tokenizer.load(path)
