"""Built-in reasoning tasks: seeded generators, exact verifiers, fixed splits, plausible mistakes."""

from __future__ import annotations

from typing import Any

from t1jax.data.tasks.base import SPLITS, Task
from t1jax.data.tasks.countdown import Countdown
from t1jax.data.tasks.linear_equation import LinearEquation
from t1jax.errors import ConfigError

TASKS: dict[str, type[Task]] = {task.name: task for task in (Countdown, LinearEquation)}


def get_task(name: str, **knobs: Any) -> Task:
    """The task called `name`, with any difficulty knobs overridden (e.g. max_numbers=3)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name].with_knobs(**knobs)


__all__ = ["SPLITS", "TASKS", "Countdown", "LinearEquation", "Task", "get_task"]
