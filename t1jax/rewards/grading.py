"""Grading one response in-process: extract its final answer, then compare with the reference.

In-process grading is bounded by the limits in limits.py but has no wall-clock timeout; RL and
evaluation grade through `Grader` (pool.py), which adds a hard per-item timeout in worker
processes and never lets one response stall or crash the trainer.
"""

from __future__ import annotations

import enum

from t1jax.rewards.equivalence import is_equivalent
from t1jax.rewards.extract import extract_answer
from t1jax.rewards.limits import MAX_ANSWER_CHARS
from t1jax.rewards.normalize import is_textual, normalize, text_key
from t1jax.rewards.parser import parse_answer


class Verdict(enum.Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    NO_ANSWER = "no_answer"  # no \boxed{}, answer line or "####" found
    TIMED_OUT = "timed_out"  # the worker ran past the per-item timeout and was replaced
    ERROR = "error"  # bad input (not a str) or a failure inside the grader


def _check_str(name: str, value) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def grade_verdict(response: str, gold: str) -> Verdict:
    """CORRECT, WRONG or NO_ANSWER for one response against its reference answer."""
    _check_str("response", response)
    _check_str("gold", gold)
    answer = extract_answer(response)
    if answer is None:
        return Verdict.NO_ANSWER
    return Verdict.CORRECT if is_equivalent(answer, gold) else Verdict.WRONG


def grade(response: str, gold: str) -> bool:
    """Whether the final answer of `response` is equivalent to `gold` (False if it gives none)."""
    return grade_verdict(response, gold) is Verdict.CORRECT


def readable_gold(_response: str, gold: str) -> bool:
    """Whether the grader can read `gold` as a reference answer (as `is_equivalent` reads it: prose
    as text, anything else parsed as mathematics). A Grader's `grade_fn`, so that an answer that
    is slow to parse meets the pool's timeout; the response is ignored."""
    if len(gold) > MAX_ANSWER_CHARS:
        return False
    if is_textual(gold):
        return bool(text_key(gold))
    text = normalize(gold)
    if not text:
        return False
    parse_answer(text)  # raises UnreadableAnswer (an ERROR verdict in the pool) if it cannot
    return True
