"""Verifiers: what decides whether an RL response is right, behind one call.

    verify_batch(problems, responses) -> BatchResult (a Verdict per response and the wall time)

`TaskVerifier` asks a built-in task's exact verifier about each response's "Final answer:" line
(in-process: those checks are exact and fast). `MathVerifier` grades each response's \\boxed{}
answer against the problem's "answer" for symbolic equivalence in a `Grader`'s worker processes,
where an item that runs past the timeout is TIMED_OUT and one that crashes its worker is ERROR:
both are wrong answers, counted, never a stalled or crashed caller.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from t1jax.data.synthesis import extract_final_answer
from t1jax.rewards.grading import Verdict
from t1jax.rewards.pool import BatchResult, Grader


class TaskVerifier:
    """A built-in task's own verifier (t1jax.data.tasks), fed each response's final answer."""

    def __init__(self, task):
        self.task = task

    def verify_batch(self, problems: Sequence[dict], responses: Sequence[str]) -> BatchResult:
        started = time.perf_counter()
        verdicts = []
        for problem, response in zip(problems, responses, strict=True):
            answer = extract_final_answer(response)
            try:
                right = self.task.verify(problem, answer or "")
            except RecursionError:  # a pathologically nested expression
                verdicts.append(Verdict.ERROR)
                continue
            verdicts.append(Verdict.CORRECT if right else Verdict.NO_ANSWER if answer is None else Verdict.WRONG)
        return BatchResult(tuple(verdicts), time.perf_counter() - started)

    def close(self) -> None:
        pass


class MathVerifier:
    """The symbolic grader (grading.py) in `grader`'s worker processes, against problem["answer"]."""

    def __init__(self, grader: Grader):
        self.grader = grader

    def verify_batch(self, problems: Sequence[dict], responses: Sequence[str]) -> BatchResult:
        if len(problems) != len(responses):
            raise ValueError(f"verify_batch: {len(problems)} problems but {len(responses)} responses")
        return self.grader.grade_batch(responses, [p["answer"] for p in problems])

    def close(self) -> None:
        self.grader.close()
