"""What the RL loop grades with, without a model: the problem set of a math JSONL or a built-in
task (bad rows counted), and one round's grading in the background with the penalties (timeouts
are wrong answers, counted; the next prompts are encoded meanwhile)."""

import json
import pathlib
import time
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from t1jax import config as config_lib
from t1jax.data.benchmarks import BOXED_INSTRUCTION
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import DataError
from t1jax.rewards import Grader, Verdict, grade_verdict
from t1jax.rewards.penalties import PenaltyConfig
from t1jax.rewards.verifiers import MathVerifier, TaskVerifier
from t1jax.train.rl.problems import problem_set
from t1jax.train.rl.rollout import grade_and_penalise, grading_metrics

ROOT = pathlib.Path(__file__).resolve().parents[3]
LONG_PROBLEM = "How many apples are there if " + "one more and " * 300 + "one?"


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["What is 3 plus 4? The answer is \\boxed{7}.", BOXED_INSTRUCTION, "Final answer: 12"] * 50
    return Tokenizer.train(texts, vocab_size=300)


def _config(**overrides):
    return config_lib.load(str(ROOT / "configs" / "tiny_math.py"), {f"rl.{k}": v for k, v in overrides.items()})


def _gsm8k_file(path):
    rows = [
        {"question": "What is 3 plus 4?", "answer": "3+4=7\n#### 7"},
        {"question": "What is 10 times 100?", "answer": "#### 1,000"},
        {"question": "Half of one?", "answer": "#### \\frac{1}{2}"},
        {"question": "No answer here?", "answer": "I do not know"},  # no "####"
        {"question": "Broken answer?", "answer": "#### \\frac{1}{"},  # the grader cannot read it
        {"question": LONG_PROBLEM, "answer": "#### 301"},  # longer than sampling.max_prompt_len
        {"answer": "#### 3"},  # no problem
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken line\n")
    return str(path)


def test_math_problem_set_counts_what_it_skips(tmp_path, tokenizer):
    path = _gsm8k_file(tmp_path / "train.jsonl")
    config = _config(data_path=path, grade_workers=1)  # configs/tiny_math.py: GSM8K's layout
    problems, verifier = problem_set(config, tokenizer)
    try:
        assert isinstance(verifier, MathVerifier)
        assert [p["answer"] for p in problems.problems] == ["7", "1000", "\\frac{1}{2}"]
        assert problems.problems[0]["prompt"] == f"What is 3 plus 4?\n{BOXED_INSTRUCTION}\n"
        assert problems.counts() == {
            "data_problems": 3,
            "data_skipped_unreadable_line": 1,
            "data_skipped_no_problem": 1,
            "data_skipped_no_answer": 1,
            "data_skipped_unreadable_answer": 1,
            "data_skipped_too_long": 1,
        }
        assert problems.report() == (
            f"RL prompts from {path}: 3 usable of 8 rows; skipped 1 not a JSON object, 1 without a problem, "
            "1 without an answer, 1 with an answer the grader cannot read, 1 longer than sampling.max_prompt_len"
        )
    finally:
        verifier.close()


def test_no_usable_problem_is_an_error_naming_the_file(tmp_path, tokenizer):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"problem": LONG_PROBLEM, "answer": "1"}) + "\n")
    expected = rf"no usable problem: RL prompts from {path}: 0 usable of 1 rows; skipped 1 longer than"
    with pytest.raises(DataError, match=expected):
        problem_set(_config(data_path=str(path), problem_field="problem", answer_format="plain"), tokenizer)


def test_the_built_in_task_is_a_problem_set_too(tokenizer):
    problems, verifier = problem_set(_config(task="linear_equation", num_prompts=12), tokenizer)
    assert isinstance(verifier, TaskVerifier) and len(problems.problems) == 12
    task = verifier.task
    assert all(p["prompt"] == task.prompt(p) for p in problems.problems)
    assert sum(problems.skipped.values()) == 0


def slow_grade(response: str, gold: str):
    """A grading function for the test: "slow" outlasts the timeout."""
    if response == "slow":
        time.sleep(60)
    return grade_verdict(response, gold)


def _samples(tokenizer, texts, truncated):
    """A SamplerOutput-like batch of the given responses (finished ones end with eos)."""
    ids = [tokenizer.encode(t) + ([] if cut else [tokenizer.eos_id]) for t, cut in zip(texts, truncated)]
    tokens = np.full((len(ids), max(map(len, ids))), tokenizer.pad_id, np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    return types.SimpleNamespace(
        tokens=tokens, lengths=np.array(list(map(len, ids))), truncated=np.array(truncated, bool)
    )


def test_one_round_is_graded_in_the_background_and_timeouts_are_wrong(tokenizer):
    problems = [{"answer": "7"}, {"answer": "12"}]
    texts = ["so \\boxed{7}", "slow", "\\boxed{12}", "\\boxed{13}"]  # K = 2 samples per problem
    out = _samples(tokenizer, texts, truncated=[False, False, True, False])
    penalties = PenaltyConfig(penalty=-1.0, ngram=4, max_repeats=3)
    meanwhile = []
    with Grader(workers=2, timeout_s=3.0, grade_fn=slow_grade) as grader, ThreadPoolExecutor(1) as executor:
        start = time.perf_counter()
        rewards, verdicts, waited = grade_and_penalise(
            MathVerifier(grader), executor, tokenizer, problems, out, 2, penalties,
            meanwhile=lambda: meanwhile.append(time.perf_counter() - start),
        )  # fmt: skip
        elapsed = time.perf_counter() - start
    assert verdicts.verdicts == (Verdict.CORRECT, Verdict.TIMED_OUT, Verdict.CORRECT, Verdict.WRONG)
    assert rewards.correct.tolist() == [True, False, True, False]  # raw correctness, for selection
    assert rewards.reward.tolist() == [1.0, 0.0, -1.0, 0.0]  # the truncated right answer is penalised
    assert rewards.truncated.tolist() == [False, False, True, False]
    # the host work ran while the slow item was still being graded, and the loop then waited for it
    assert len(meanwhile) == 1 and meanwhile[0] < 3.0 and 1.0 < waited <= elapsed < 30
    metrics = grading_metrics([verdicts, verdicts], waited)
    assert metrics["grade_timeouts"] == 2 and metrics["grade_errors"] == 0 and metrics["grade_no_answer"] == 0
    assert metrics["time_grade"] == pytest.approx(2 * verdicts.elapsed_s) and metrics["time_grade_wait"] == waited
