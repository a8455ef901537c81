"""Math JSONL for RL and evaluation (read_benchmark): both common field layouts, GSM8K's "####"
answers, bad rows counted by reason; and PromptFeed, the prompt stream with a batch drawn ahead."""

import json

import pytest

from t1jax import config as config_lib
from t1jax.data.benchmarks import ANSWER_FORMATS, BOXED_INSTRUCTION, load_benchmark, read_benchmark
from t1jax.data.rl_prompts import PromptFeed, prompt_stream
from t1jax.errors import ConfigError, DataError


def _write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_math_layout_and_gsm8k_layout(tmp_path):
    math = _write(tmp_path / "math.jsonl", [{"problem": "Find $x$ if $2x=1$.", "answer": "\\frac{1}{2}"}])
    assert load_benchmark(math) == [
        {
            "id": "1",
            "problem": "Find $x$ if $2x=1$.",
            "answer": "\\frac{1}{2}",
            "prompt": f"Find $x$ if $2x=1$.\n{BOXED_INSTRUCTION}\n",
        }
    ]
    gsm8k = _write(
        tmp_path / "gsm8k.jsonl",
        [
            {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
            {"question": "Pay 1000 twice?", "answer": "It is 2,000 in all.\n#### 2,000 "},
            {"question": "Mark #### twice?", "answer": "a #### b\n#### -3"},  # the last marker counts
        ],
    )
    rows = load_benchmark(gsm8k, problem_field="question", answer_format="gsm8k")
    assert [r["answer"] for r in rows] == ["7", "2000", "-3"]
    assert rows[0]["prompt"] == f"Tom has 3 apples and buys 4. How many?\n{BOXED_INSTRUCTION}\n"
    # the plain format keeps the whole solution as the answer
    assert load_benchmark(gsm8k, problem_field="question")[0]["answer"] == "3+4=<<3+4=7>>7\n#### 7"


def test_bad_rows_are_counted_by_reason_or_fatal_when_strict(tmp_path):
    path = _write(
        tmp_path / "mixed.jsonl",
        [
            {"question": "ok?", "answer": "so #### 5"},
            "{not json",
            [1, 2],
            {"answer": "#### 1"},  # no problem
            {"question": "", "answer": "#### 1"},  # empty problem
            {"question": "no marker?", "answer": "5"},
            {"question": "null?", "answer": None},
            {"question": "empty after marker?", "answer": "#### "},
            {"question": "a list?", "answer": ["1"]},
            {"question": "number?", "answer": "#### 12"},
        ],
    )
    data = read_benchmark(path, problem_field="question", strict=False, answer_format="gsm8k")
    assert [r["answer"] for r in data.rows] == ["5", "12"] and [r["id"] for r in data.rows] == ["1", "10"]
    assert dict(data.skipped) == {"unreadable_line": 2, "no_problem": 2, "no_answer": 4}
    assert data.lines == 10
    with pytest.raises(DataError, match=r"mixed.jsonl, line 2: not valid JSON"):
        read_benchmark(path, problem_field="question", answer_format="gsm8k")
    numbers = _write(tmp_path / "numbers.jsonl", [{"problem": "p", "answer": 42}, {"problem": "q", "answer": 0.5}])
    assert [r["answer"] for r in load_benchmark(numbers)] == ["42", "0.5"]


def test_a_file_with_no_usable_row_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path / "useless.jsonl", [{"problem": "p"}, {"problem": "q", "answer": ""}])
    with pytest.raises(DataError, match=r"useless.jsonl holds no usable problem \(2 no_answer\)"):
        read_benchmark(path, strict=False)
    junk = _write(tmp_path / "junk.jsonl", ["{oops", "[]"])
    with pytest.raises(DataError, match="junk.jsonl holds no valid records"):
        read_benchmark(junk, strict=False)


def test_the_config_accepts_exactly_the_answer_formats():
    for fmt in ANSWER_FORMATS:
        config_lib.validate(config_lib.with_overrides(config_lib.base_config(), {"rl.answer_format": fmt}))
    with pytest.raises(ConfigError, match="rl.answer_format must be 'plain' or 'gsm8k', got 'latex'"):
        config_lib.validate(config_lib.with_overrides(config_lib.base_config(), {"rl.answer_format": "latex"}))


def _ids(batch):
    return [p["id"] for p in batch[0]]


def test_prompt_feed_state_never_skips_the_batch_drawn_ahead():
    problems = [{"id": i, "prompt": "x" * i} for i in range(10)]

    def feed():
        return PromptFeed(prompt_stream(problems, 3, seed=4), lambda p: [len(p["prompt"])])

    reference = feed()
    expected = [_ids(reference.next()) for _ in range(6)]
    live = feed()
    live.next()
    live.prefetch()  # drawn ahead, as while grading
    live.prefetch()  # a second call draws nothing more
    state = live.get_state()
    assert _ids(live.next()) == expected[1]
    resumed = feed()
    resumed.set_state(state)
    problems_, prompts = resumed.next()
    assert [p["id"] for p in problems_] == expected[1] and prompts == [[i] for i in expected[1]]
    assert [_ids(resumed.next()) for _ in range(4)] == expected[2:6]
