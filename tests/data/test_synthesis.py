"""Trial-and-error traces: every attempt parses back, wrong ones fail the verifier, the final one passes."""

import json
import random
import re

import pytest

from t1jax import config as config_lib
from t1jax.data.synthesis import (
    draw_failed_count,
    extract_final_answer,
    sft_examples,
    synthesize_from_attempts,
    synthesize_jsonl,
    synthesize_trace,
)
from t1jax.data.tasks import TASKS, get_task
from t1jax.errors import DataError
from t1jax.train.sft import load_examples


def test_extract_final_answer():
    assert extract_final_answer("Try: 3\nFinal answer: 5") == "5"
    assert extract_final_answer("Final answer: 4\nhmm\nFinal answer:  (3+5)*2 \n") == "(3+5)*2"
    assert extract_final_answer("work... Final answer: 12\nmore text") == "12"
    assert extract_final_answer("no answer here") is None
    assert extract_final_answer("Final answer:   \n") is None


def test_failed_count_distribution():
    rng = random.Random(0)
    draws = [draw_failed_count(rng, max_failed=3) for _ in range(2000)]
    assert set(draws) == {0, 1, 2, 3} and 0.45 < draws.count(0) / len(draws) < 0.55
    assert {draw_failed_count(rng, max_failed=0) for _ in range(50)} == {0}


TRACE_LINE = re.compile(r"Try: .+\nCheck: .+\.\n(Wrong, because .+\.|Correct\.)")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_traces_parse_back_and_every_attempt_is_graded_correctly(name):
    task = get_task(name)
    examples = sft_examples(task, "train", 300, seed=0, max_failed=3)
    problems = task.generate("train", 300, seed=0)
    failed_counts = []
    for example, problem in zip(examples, problems):
        response = example["response"]
        assert example["prompt"] == task.prompt(problem) and example["answer"] == problem["answer"]
        attempts = [line[len("Try: ") :] for line in response.split("\n") if line.startswith("Try: ")]
        *wrong, right = attempts
        assert not any(task.verify(problem, attempt) for attempt in wrong), response
        assert task.verify(problem, right)
        assert response.split("\n")[-1] == f"Final answer: {problem['answer']}"
        assert task.verify(problem, extract_final_answer(response))
        # The exact shape: blocks of Try/Check/verdict, only the last one "Correct.", then the final line.
        blocks = TRACE_LINE.findall(response)
        assert len(blocks) == len(attempts) and blocks[-1] == "Correct." and response.count("Correct.") == 1
        assert "".join(m.group(0) + "\n" for m in TRACE_LINE.finditer(response)) + response.split("\n")[-1] == (
            response
        )
        failed_counts.append(len(wrong))
    assert set(failed_counts) == {0, 1, 2, 3}


def test_sft_examples_are_reproducible_and_accept_task_names():
    first = sft_examples("countdown", "validation", 20, seed=5)
    assert first == sft_examples(get_task("countdown"), "validation", 20, seed=5)
    assert first != sft_examples("countdown", "validation", 20, seed=6)
    rng = random.Random(1)
    problem = get_task("linear_equation").generate("test", 1, seed=0)[0]
    trace = synthesize_trace(get_task("linear_equation"), problem, rng, max_failed=0)
    assert trace.count("Try: ") == 1 and trace.endswith(f"Final answer: {problem['answer']}")


def record(**overrides):
    base = {
        "problem": "What is 6 * 7?",
        "answer": "42",
        "attempts": [
            {"text": "6 * 7 = 36.\nFinal answer: 36", "correct": False, "critique": "6 * 6 is 36, not 6 * 7."},
            {"text": "6 * 7 = 48\nFinal answer: 48", "correct": False},
            {"text": "6 * 7 = 42.\nFinal answer: 42", "correct": True},
        ],
    }
    return {**base, **overrides}


def test_synthesize_from_attempts_merges_wrong_and_right_attempts():
    traces = [synthesize_from_attempts(record(), random.Random(seed)) for seed in range(40)]
    for trace in traces:
        assert trace.endswith("Final answer: 42") and trace.count("Final answer:") == 1
        assert trace.count("This checks out.") == 1 and "6 * 7 = 42." in trace
        assert trace.count("Let me verify this: it gives") == trace.count("6 * 7 =")
    wrong_counts = {t.count("This is wrong") for t in traces}
    assert wrong_counts == {0, 1, 2}
    assert any("it gives 36. 6 * 6 is 36, not 6 * 7. This is wrong" in t for t in traces)  # critique kept
    assert synthesize_from_attempts(record()) == synthesize_from_attempts(record())  # seeded per record
    assert synthesize_from_attempts(record(attempts=[{"text": "7", "correct": False}])) is None
    with pytest.raises(DataError, match="missing field 'answer'"):
        synthesize_from_attempts({"problem": "p", "attempts": []})
    with pytest.raises(DataError, match=r"attempts\[0\] must have a boolean 'correct'"):
        synthesize_from_attempts(record(attempts=[{"text": "7", "correct": "yes"}]))


def write_input(path):
    lines = [
        json.dumps(record()),
        '{"problem": "broken json", ',
        json.dumps({"problem": "no answer", "attempts": []}),
        "",
        json.dumps(record(problem="What is 2 + 2?", answer=4, attempts=[{"text": "5", "correct": False}])),
        json.dumps(record(problem="What is 2 + 3?", answer=5, attempts=[{"text": "2 + 3 = 5", "correct": True}])),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_synthesize_jsonl_skips_and_counts_bad_lines(tmp_path, caplog):
    source, out = tmp_path / "attempts.jsonl", tmp_path / "out" / "sft.jsonl"
    write_input(source)
    counts = synthesize_jsonl(str(source), str(out), seed=0)
    assert counts == {"records": 5, "written": 2, "bad": 2, "no_correct": 1, "bad_lines": [2, 3],
                      "no_correct_lines": [5]}  # fmt: skip
    assert "attempts.jsonl, line 3: skipped: missing field 'answer'" in caplog.text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["answer"] for row in rows] == ["42", "5"]
    for row in rows:
        assert row["prompt"].endswith("\n") and "Final answer" in row["prompt"]
        assert extract_final_answer(row["response"]) == row["answer"]
    again = tmp_path / "again.jsonl"
    synthesize_jsonl(str(source), str(again), seed=0)
    assert again.read_text() == out.read_text()


def test_synthesize_jsonl_strict_and_fatal_errors(tmp_path):
    source, out = tmp_path / "attempts.jsonl", tmp_path / "sft.jsonl"
    write_input(source)
    with pytest.raises(DataError, match=r"attempts.jsonl, line 2: not valid JSON"):
        synthesize_jsonl(str(source), str(out), strict=True)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))  # no half-written output
    with pytest.raises(DataError, match="data file not found: .*missing.jsonl"):
        synthesize_jsonl(str(tmp_path / "missing.jsonl"), str(out))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl holds no valid records"):
        synthesize_jsonl(str(tmp_path / "empty.jsonl"), str(out))
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00junk\n")
    with pytest.raises(DataError, match="binary.jsonl is not UTF-8 text"):
        synthesize_jsonl(str(tmp_path / "binary.jsonl"), str(out))


def test_sft_config_sets_how_many_wrong_attempts_precede_the_right_one():
    def failed_counts(**overrides):
        overrides = {"sft.task": "linear_equation", "sft.num_builtin_examples": 400, **overrides}
        train, validation, _ = load_examples(config_lib.load(None, overrides), seed=0)
        return [example["response"].count("Try: ") - 1 for example in train + validation]

    assert set(failed_counts(**{"sft.retry_prob": 0.0})) == {0}
    # retry_prob 0.75, at most 3 failures: P(3) = 0.75**3 = 0.42, mean 0.75 + 0.75**2 + 0.75**3 = 1.73
    counts = failed_counts(**{"sft.retry_prob": 0.75, "sft.max_failed": 3})
    assert set(counts) == {0, 1, 2, 3}
    assert 0.35 < counts.count(3) / len(counts) < 0.49 and 1.56 < sum(counts) / len(counts) < 1.9  # +-3 sd
