"""Check drills: documents made of the computations a task's checks perform, with nothing around them.

Why they exist: trained on trial-and-error traces alone, a model of the demo's size learns to copy
a check's result from the problem (the right-hand side of the equation, the target) instead of
computing it; `t1jax checks` measures this. Its checks then carry no information, and neither
self-verification nor RL has anything to work with. In a drill the line "2*5+3 = 13" has no
problem to copy from, so the only way to lower the loss is to do the arithmetic. A short SFT stage
on drills before the traces (`sft.source = "drills"`, `demo.drill_steps`) makes the later checks
informative.

The lines are `task.drill(problem, attempt)` for problems of one split and attempts drawn from the
right one and the task's plausible mistakes, i.e. the very computations the traces' checks hold.
"""

from __future__ import annotations

import random

from t1jax.data.tasks import Task
from t1jax.errors import ConfigError

DRILL_PROMPT = "Checks:\n"
LINES_PER_DRILL = 12  # ~140 tokens for the demo's equations: fills the demo's sft.seq_len of 144
_WRONG_PER_PROBLEM = 6


def drill_lines(task: Task, split: str, n: int, seed: int) -> list[str]:
    """`n` drill lines over problems of `split` (problems may repeat), reproducible from `seed`."""
    if task.split_fractions[split] == 0:
        raise ConfigError(f"{task.name}: split '{split}' has fraction 0, so it has no problems to drill")
    rng = random.Random(f"drills/{task.name}/{split}/{seed}")
    lines: list[str] = []
    draws = 0
    while len(lines) < n:
        draws += 1
        if draws > 1000 and not lines:
            raise ConfigError(f"task {task.name} has no check drills: its checks read the problem itself")
        problem = task.sample(rng)
        if problem is None or task.split_of(problem) != split:
            continue
        attempt = rng.choice([task.correct_attempt(problem), *task.wrong_attempts(problem, rng, _WRONG_PER_PROBLEM)])
        line = task.drill(problem, attempt)
        if line is not None:
            lines.append(line)
    return lines


def check_drills(task: Task, split: str, n: int, seed: int, lines_per_drill: int = LINES_PER_DRILL) -> list[dict]:
    """`n` SFT examples {"prompt", "response"}: each response is `lines_per_drill` drill lines."""
    if lines_per_drill < 1:
        raise ConfigError(f"lines_per_drill must be >= 1, got {lines_per_drill}")
    lines = drill_lines(task, split, n * lines_per_drill, seed)
    return [
        {"prompt": DRILL_PROMPT, "response": "\n".join(lines[i : i + lines_per_drill])}
        for i in range(0, len(lines), lines_per_drill)
    ]
