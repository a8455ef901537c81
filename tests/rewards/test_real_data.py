"""The grader against real benchmark rows: every reference solution must grade as correct against
its own answer, and a perturbed answer must not. Graded in-process (no pool), so it is fast."""

import json
import re

from t1jax.data.benchmarks import benchmarks_dir
from t1jax.rewards import extract_answer, grade, is_equivalent
from t1jax.rewards.normalize import is_textual, normalize
from t1jax.rewards.parser import parse_answer


def _rows(name: str) -> list[dict]:
    path = benchmarks_dir() / f"{name}.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _failures(rows: list[dict]) -> list[str]:
    return [
        f"{row['id']}: extracted {extract_answer(row['solution'])!r}, answer {row['answer']!r}"
        for row in rows
        if not grade(row["solution"], row["answer"])
    ]


def test_math500_solutions_grade_correct():
    rows = _rows("math500")
    failures = _failures(rows)
    agreement = 1 - len(failures) / len(rows)
    assert agreement >= 0.995, "\n".join(failures)


def test_gsm8k_solutions_grade_correct():
    rows = _rows("gsm8k")
    assert _failures(rows) == []


def test_math500_answers_are_readable():
    """Every non-prose reference answer goes through the parser (not only string equality)."""
    unreadable = []
    for row in _rows("math500"):
        if not is_textual(row["answer"]):
            try:
                parse_answer(normalize(row["answer"]))
            except ValueError as e:
                unreadable.append(f"{row['id']}: {row['answer']!r}: {e}")
    assert unreadable == []


def test_math500_perturbed_answers_are_wrong():
    """Changing the first digit of a reference answer (1 -> 2, ..., 9 -> 0) must change its value."""
    accepted = []
    for row in _rows("math500"):
        answer = row["answer"]
        digit = re.search(r"\d", answer)
        if digit is None:
            continue
        perturbed = answer[: digit.start()] + str((int(digit.group()) + 1) % 10) + answer[digit.end() :]
        if is_equivalent(perturbed, answer):
            accepted.append(f"{row['id']}: {perturbed!r} vs {answer!r}")
    assert accepted == []


def test_gsm8k_off_by_one_is_wrong():
    rows = _rows("gsm8k")[:300]
    assert not any(grade(f"#### {int(row['answer']) + 1}", row["answer"]) for row in rows)
