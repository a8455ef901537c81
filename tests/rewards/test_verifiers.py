"""Verifiers behind one call, verify_batch(problems, responses): the symbolic grader in its pool
(right, wrong, no answer, timed out, crashed) and the built-in tasks' exact verifiers."""

import os
import random
import time

import pytest

from t1jax.data.synthesis import synthesize_trace
from t1jax.data.tasks import get_task
from t1jax.rewards import Grader, Verdict, grade_verdict
from t1jax.rewards.grading import readable_gold
from t1jax.rewards.verifiers import MathVerifier, TaskVerifier

# (response, gold, verdict worked out by hand)
HAND_MADE = [
    ("so x = 1/2, i.e. \\boxed{\\frac{1}{2}}", "0.5", Verdict.CORRECT),
    ("The answer is \\boxed{3}.", "4", Verdict.WRONG),
    ("\\boxed{(1, 2)}", "(2, 1)", Verdict.WRONG),  # tuples are ordered
    ("roots: \\boxed{2, -1}", "-1, 2", Verdict.CORRECT),  # solution lists are not
    ("I give up.", "7", Verdict.NO_ANSWER),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", Verdict.CORRECT),
    ("#### 1,000", "1000", Verdict.CORRECT),
]


def test_math_verifier_says_what_the_grader_says():
    problems = [{"answer": gold} for _, gold, _ in HAND_MADE]
    responses = [response for response, _, _ in HAND_MADE]
    with Grader(workers=2, timeout_s=10.0) as grader:
        result = MathVerifier(grader).verify_batch(problems, responses)
    assert result.verdicts == tuple(v for _, _, v in HAND_MADE)
    assert result.verdicts == tuple(grade_verdict(r, p["answer"]) for r, p in zip(responses, problems))
    assert result.correct.tolist() == [v is Verdict.CORRECT for _, _, v in HAND_MADE]
    with pytest.raises(ValueError, match="2 problems but 1 responses"):
        MathVerifier(grader).verify_batch(problems[:2], responses[:1])


def slow_or_crashing_grade(response: str, gold: str):
    """A grading function for the tests: "slow" outlasts any test timeout, "crash" kills its worker."""
    if response == "slow":
        time.sleep(60)
    if response == "crash":
        os._exit(3)
    return grade_verdict(response, gold)


def test_timeouts_and_crashes_are_wrong_answers_counted_without_stalling():
    responses = ["slow", "\\boxed{1}", "crash", "\\boxed{2}", "slow", "\\boxed{5}"]
    problems = [{"answer": a} for a in ("1", "1", "1", "2", "3", "4")]
    # 3 s: a replaced worker imports this test module (and t1jax.data) before it can grade
    with Grader(workers=2, timeout_s=3.0, grade_fn=slow_or_crashing_grade) as grader:
        verifier = MathVerifier(grader)
        start = time.perf_counter()
        result = verifier.verify_batch(problems, responses)
        elapsed = time.perf_counter() - start
        assert result.verdicts == (
            Verdict.TIMED_OUT,
            Verdict.CORRECT,
            Verdict.ERROR,
            Verdict.CORRECT,
            Verdict.TIMED_OUT,
            Verdict.WRONG,
        )
        assert result.correct.tolist() == [False, True, False, True, False, False]
        assert result.counts == {"correct": 2, "wrong": 1, "no_answer": 0, "timed_out": 2, "error": 1}
        assert elapsed < 30  # two 3 s timeouts and restarted workers, never the 60 s sleep
        assert verifier.verify_batch([{"answer": "3"}], ["\\boxed{3}"]).verdicts == (Verdict.CORRECT,)
        verifier.close()
    with pytest.raises(Exception, match="closed"):
        verifier.verify_batch([{"answer": "3"}], ["\\boxed{3}"])


def test_task_verifier_uses_the_tasks_own_check():
    task = get_task("linear_equation")
    problems = task.generate("test", 3, seed=0)
    wrong = task.wrong_attempts(problems[1], random.Random(0), 1)[0]
    responses = [
        synthesize_trace(task, problems[0], random.Random(0)),
        f"Try: {wrong}\nFinal answer: {wrong}",
        f"Try: {task.correct_attempt(problems[2])}\nCorrect.",  # right, but no final answer line
    ]
    result = TaskVerifier(task).verify_batch(problems, responses)
    assert result.verdicts == (Verdict.CORRECT, Verdict.WRONG, Verdict.NO_ANSWER)
    assert result.elapsed_s >= 0


@pytest.mark.parametrize(
    "gold, readable",
    [
        ("\\frac{1}{2}", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("\\text{Evelyn}", True),
        ("x \\in [2, 5)", True),
        ("", False),
        ("\\frac{1}{", False),
        ("))((", False),
        ("1" * 2000, False),  # over MAX_ANSWER_CHARS
    ],
)
def test_readable_gold(gold, readable):
    try:
        assert readable_gold("", gold) is readable
    except Exception:  # the pool turns an exception into ERROR: not readable
        assert not readable
