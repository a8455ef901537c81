"""Correctness for the built-in tasks: their own exact verifiers, fed the extracted final answer.

The tasks in t1jax.data.tasks already verify answers exactly (and never evaluate model text);
this only finds the answer in a response, the same way as for math benchmarks.
"""

from __future__ import annotations

from t1jax.rewards.extract import extract_answer
from t1jax.rewards.limits import MAX_ANSWER_CHARS


def task_reward(task, problem: dict, response: str) -> bool:
    """Whether `response` ends with an answer that `task` (a Task or a task name) verifies for `problem`."""
    if not isinstance(response, str):
        raise TypeError(f"task_reward: response must be a str, got {type(response).__name__}")
    if isinstance(task, str):
        from t1jax.data.tasks import get_task  # imported here: the grading workers never need it

        task = get_task(task)
    answer = extract_answer(response)
    if answer is None or len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        return bool(task.verify(problem, answer))
    except RecursionError:  # a pathologically nested expression
        return False
