"""Every config key t1jax knows, with its default: `base_config()` (configs/*.py start from it),
and `validate(config)`, the checks of all sections.

Each section's keys, defaults and check live together in one module (the table below says
which); the `model` section is built from the fields of ModelConfig.
"""

from __future__ import annotations

import ml_collections

from t1jax.config import devices, inference, model, run, training

# Every top-level key in order: name -> (its default, the check of its values).
SECTIONS = {
    "model": (model.model_section, model.check_model),
    "mesh": (devices.mesh_section, devices.check_mesh),
    "distributed": (devices.distributed_section, devices.check_distributed),
    "optim": (training.optim_section, training.check_optim),
    "data": (training.data_section, training.check_data),
    "sft": (training.sft_section, training.check_sft),
    "task_knobs": (training.task_knobs_default, None),  # checked by t1jax.data.tasks.check_tasks
    "sampling": (inference.sampling_section, inference.check_sampling),
    "rl": (training.rl_section, training.check_rl),
    "eval": (inference.eval_section, inference.check_eval),
    "demo": (run.demo_section, run.check_demo),
    "run": (run.run_section, run.check_run),
    "checkpoint": (run.checkpoint_section, run.check_checkpoint),
}


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    for name, (defaults, _) in SECTIONS.items():
        c[name] = defaults()
    return c


def validate(config) -> None:
    """Raises ConfigError for values that are inconsistent with each other. (The task names and
    knobs are checked by t1jax.data.tasks.check_tasks(config).)"""
    for _, check in SECTIONS.values():
        if check is not None:
            check(config)
