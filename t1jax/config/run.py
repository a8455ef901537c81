"""A run's bookkeeping: the `demo` section (`t1jax demo`), and the `run` and `checkpoint`
sections, each with the check of its values."""

from __future__ import annotations

import ml_collections

from t1jax.config.require import require


def demo_section() -> ml_collections.ConfigDict:
    # The end-to-end demo (`t1jax demo`): SFT -> RL -> evaluation -> report in run.workdir.
    dm = ml_collections.ConfigDict()
    dm.sft_dir = ""  # a finished SFT run to start RL from ("": train one in <workdir>/sft)
    dm.drill_steps = 0  # SFT steps on check drills before SFT on traces (0: no drill stage)
    # The drills' learning rate (optim.learning_rate is the traces'): arithmetic is learnt from
    # scratch at a rate at which the traces that follow would overwrite it.
    dm.drill_learning_rate = 3e-3
    dm.drill_batch_size = 32  # drills per step (sft.batch_size is the traces': rows, maybe packed)
    dm.rl_checkpoints = 3  # evenly spaced RL checkpoints whose inference-scaling curves are drawn
    return dm


def check_demo(config) -> None:
    dm = config.demo
    require(dm.rl_checkpoints >= 1, f"demo.rl_checkpoints must be >= 1, got {dm.rl_checkpoints}")
    require(dm.drill_steps >= 0, f"demo.drill_steps must be >= 0, got {dm.drill_steps}")
    require(dm.drill_learning_rate > 0, f"demo.drill_learning_rate must be > 0, got {dm.drill_learning_rate}")
    require(dm.drill_batch_size >= 1, f"demo.drill_batch_size must be >= 1, got {dm.drill_batch_size}")


def run_section() -> ml_collections.ConfigDict:
    # Run bookkeeping.
    c = ml_collections.ConfigDict()
    c.workdir = "runs/default"
    c.seed = 0
    c.log_every = 10
    c.progress = True
    c.tensorboard = True
    # Weights & Biases project that every metric is also logged to ("": off; pip install -e ".[wandb]")
    c.wandb_project = ""
    return c


def check_run(config) -> None:
    require(config.run.log_every > 0 and config.sft.eval_every > 0, "run.log_every and sft.eval_every must be positive")


def checkpoint_section() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.save_every = 100
    c.max_to_keep = 3
    c.async_save = True
    return c


def check_checkpoint(config) -> None:
    require(
        config.checkpoint.max_to_keep > 0 and config.checkpoint.save_every > 0,
        "checkpoint.max_to_keep and checkpoint.save_every must be positive",
    )
