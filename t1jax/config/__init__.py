"""Configs: every key t1jax knows with its default, and loading, overriding and validating them.

A config is an `ml_collections.ConfigDict` from a Python file whose `get_config()` returns it
(see configs/, which start from `base_config()`). Every key must exist in `base_config()`: a
misspelt key is an error naming the closest valid key, never a silently ignored flag.

    loading.py    load(), set_value(), with_overrides(): files, overrides, the schema check
    base.py       base_config() and validate(): every section, in order, with its check
    model.py      ModelConfig: the model's keys and defaults (the `model` section is built from it)
    devices.py    mesh (with its sharding rules), distributed
    training.py   optim, sft, task_knobs, rl
    inference.py  sampling, eval (and parse_budgets)
    run.py        demo, run, checkpoint

This package imports nothing else of t1jax but t1jax.errors (nor JAX): the task names and knobs
are checked by t1jax.data.tasks.check_tasks(config).
"""

from t1jax.config.base import base_config, validate
from t1jax.config.devices import MESH_AXES
from t1jax.config.inference import parse_budgets
from t1jax.config.loading import load, set_value, with_overrides
from t1jax.config.model import DTYPES, ModelConfig
from t1jax.errors import ConfigError

__all__ = [
    "DTYPES",
    "MESH_AXES",
    "ConfigError",
    "ModelConfig",
    "base_config",
    "load",
    "parse_budgets",
    "set_value",
    "validate",
    "with_overrides",
]
