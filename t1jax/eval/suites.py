"""What to evaluate on: a list of problems with prompts, a grader, and an answer format.

A suite knows how its model is asked for an answer ("Final answer: ..." for the built-in tasks,
\\boxed{...} for math benchmarks), which is all inference scaling needs to find where the
reasoning ends and how to force an answer.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from t1jax.data.benchmarks import load_benchmark
from t1jax.data.synthesis import FINAL_ANSWER, extract_final_answer
from t1jax.data.tasks import get_task
from t1jax.eval.verification import audit
from t1jax.rewards import extract_answer
from t1jax.rewards.pool import Grader


class Suite(abc.ABC):
    name: str
    problems: list[dict]  # each has at least "id" and "prompt"
    answer_marker: str  # where a response's reasoning ends and its answer begins
    forcing_suffix: str  # appended to cut reasoning to ask for the answer now

    @abc.abstractmethod
    def grade(self, items: Sequence[int], responses: Sequence[str]) -> list[bool]:
        """Whether responses[j] answers problem items[j] correctly."""

    @abc.abstractmethod
    def answer_key(self, response: str) -> str | None:
        """The response's answer, normalised for majority voting; None if it gives none."""


class TaskSuite(Suite):
    """A split of a built-in task, graded by the task's exact verifier."""

    answer_marker = FINAL_ANSWER
    forcing_suffix = "\n" + FINAL_ANSWER

    def __init__(self, task_name: str, split: str, num_problems: int, seed: int = 0, knobs: dict | None = None):
        self.task = get_task(task_name, **(knobs or {}))
        self.name = f"{task_name}/{split}"
        self.problems = [{**p, "prompt": self.task.prompt(p)} for p in self.task.generate(split, num_problems, seed)]

    def grade(self, items, responses):
        return [self.task.verify(self.problems[i], extract_final_answer(r) or "") for i, r in zip(items, responses)]

    def audit(self, items, responses) -> dict:
        """How right the responses' own checks and verdicts are (see eval/verification.py)."""
        return audit(self.task, [self.problems[i] for i in items], responses)

    def answer_key(self, response):
        answer = extract_final_answer(response)
        return None if answer is None else "".join(answer.split())


class BenchmarkSuite(Suite):
    """A math benchmark (math500, gsm8k, aime24 or a JSONL path), graded for symbolic equivalence
    in worker processes with a hard timeout per answer."""

    answer_marker = "\\boxed{"
    forcing_suffix = "\nThe final answer is \\boxed{"

    def __init__(self, name_or_path: str, limit: int = 0, timeout_s: float = 5.0):
        rows = load_benchmark(name_or_path)
        self.name, self.problems, self.timeout_s = name_or_path, rows[:limit] if limit else rows, timeout_s

    def grade(self, items, responses):
        golds = [self.problems[i]["answer"] for i in items]
        with Grader(timeout_s=self.timeout_s) as grader:
            return grader.grade_batch(list(responses), golds).correct.tolist()

    def answer_key(self, response):
        answer = extract_answer(response)
        return None if answer is None else "".join(answer.split())
