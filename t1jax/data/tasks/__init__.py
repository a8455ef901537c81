"""Built-in reasoning tasks: seeded generators, exact verifiers, fixed splits, plausible mistakes."""

from __future__ import annotations

from typing import Any

from t1jax.data.tasks.base import SPLITS, Task
from t1jax.data.tasks.countdown import Countdown
from t1jax.data.tasks.graph_path import GraphPath
from t1jax.data.tasks.linear_equation import LinearEquation
from t1jax.errors import ConfigError

TASKS: dict[str, type[Task]] = {task.name: task for task in (Countdown, GraphPath, LinearEquation)}


def get_task(name: str, **knobs: Any) -> Task:
    """The task called `name`, with any difficulty knobs overridden (e.g. max_numbers=3)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name].with_knobs(**knobs)


def parse_knobs(text: str) -> dict[str, Any]:
    """ "max_numbers=4,negative=true" -> {"max_numbers": 4, "negative": True} (ints, bools or strings)."""
    knobs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"task knobs must look like 'name=value,name=value', got {text!r}")
        value = value.strip()
        if value.lower() in ("true", "false"):
            knobs[name.strip()] = value.lower() == "true"
        else:
            try:
                knobs[name.strip()] = int(value)
            except ValueError:
                knobs[name.strip()] = value
    return knobs


def task_from_config(config, name: str) -> Task:
    """The built-in task `name` with the config's task_knobs."""
    return get_task(name, **parse_knobs(config.task_knobs))


def check_tasks(config) -> None:
    """Raises ConfigError unless sft.task and rl.task name built-in tasks that accept the config's
    task_knobs (run right after loading a config, before any training)."""
    for task in sorted({config.sft.task, config.rl.task}):
        get_task(task, **parse_knobs(config.task_knobs))


__all__ = [
    "SPLITS",
    "TASKS",
    "Countdown",
    "GraphPath",
    "LinearEquation",
    "Task",
    "check_tasks",
    "get_task",
    "parse_knobs",
    "task_from_config",
]
