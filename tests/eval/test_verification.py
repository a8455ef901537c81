"""The self-verification audit: synthesized traces are all right; planted errors are counted exactly."""

import pytest

from t1jax.data.synthesis import sft_examples
from t1jax.data.tasks import TASKS, get_task
from t1jax.eval.verification import audit, audit_response


@pytest.mark.parametrize("name", sorted(TASKS))
def test_synthesized_traces_have_only_right_checks_and_verdicts(name):
    task = get_task(name)
    problems = task.generate("train", 40, 3)
    examples = sft_examples(task, "train", 40, 3)
    result = audit(task, problems, [e["response"] for e in examples])
    assert result["check_accuracy"] == 1.0 and result["verdict_accuracy"] == 1.0
    tries = sum(e["response"].count("Try: ") for e in examples)
    assert result["attempts_per_response"] == pytest.approx(tries / 40) and result["checks"] == tries


def test_planted_mistakes_are_counted():
    task = get_task("linear_equation")
    problem = {"a": 3, "b": 4, "d": 0, "e": 19, "solution": 5, "answer": "5"}  # 3x + 4 = 19
    response = "\n".join([
        "Try: x = 4",
        "Check: 3*4+4 = 19, right side 19.",  # wrong arithmetic (16) ...
        "Correct.",  # ... and a wrong verdict
        "Try: x = 5",
        "Check: 3*5+4 = 19, right side 19.",  # right
        "Correct.",  # right
        "Try: x = banana",
        "Final answer: 5",
    ])  # fmt: skip
    assert audit_response(task, problem, response) == {
        "attempts": 3, "checks": 2, "right_checks": 1, "verdicts": 2, "right_verdicts": 1,
    }  # fmt: skip


def test_garbage_attempts_do_not_crash_the_audit():
    for name in sorted(TASKS):
        task = get_task(name)
        problem = task.generate("test", 1, 0)[0]
        junk = "Try: ((((\nCheck: ?\nWrong\nTry: 1/0\nCheck: x.\nCorrect.\nTry: " + "9" * 50 + "\nTry: x = 1e999"
        counts = audit_response(task, problem, junk)
        assert counts["attempts"] == 4 and counts["right_checks"] == 0
