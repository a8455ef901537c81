"""Evaluation and inference scaling with deterministic fake models, so every number is known."""

import json

import pytest

from t1jax.data.synthesis import FINAL_ANSWER, sft_examples
from t1jax.data.tokenizer import Tokenizer
from t1jax.eval.evaluate import default_ks, evaluate
from t1jax.eval.generation import Generation
from t1jax.eval.scaling import reasoning_of, scaling_curve
from t1jax.eval.suites import BenchmarkSuite, TaskSuite

# Five problems; the fake model's 4 answers to each (None: no \boxed answer at all).
ROWS = [("1+1", "2"), ("2+3", "5"), ("half of 1", "\\frac{1}{2}"), ("3*3", "9"), ("10-7", "3")]
ANSWERS = [
    ["2", "2", "3", "2"],  # 3 of 4 right, majority right
    ["6", "6", "5", None],  # 1 right, majority wrong
    ["0.5", "1/2", "\\frac12", "2"],  # 3 right in three spellings; majority key "0.5" (tie, first) is right
    ["8", None, None, None],  # 0 right
    ["3", "3", "3", "3"],  # all right
]


def _fake_generate(prompts, n):
    index = {f"{q}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n": i
             for i, (q, _) in enumerate(ROWS)}  # fmt: skip
    out = []
    for prompt in prompts:
        answers = ANSWERS[index[prompt]][:n]
        out.append([
            Generation(f"Some work.\nSo \\boxed{{{a}}}." if a else "I give up.", 10 + 2 * k, a is None)
            for k, a in enumerate(answers)
        ])  # fmt: skip
    return out


@pytest.fixture
def benchmark_file(tmp_path):
    path = tmp_path / "five.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "problem": q, "answer": a}) + "\n" for i, (q, a) in enumerate(ROWS))
    )
    return str(path)


def test_eval_on_a_jsonl_with_a_fake_model_gives_the_hand_computed_numbers(benchmark_file):
    summary, records = evaluate(BenchmarkSuite(benchmark_file), _fake_generate, num_samples=4)
    assert [r["correct"] for r in records] == [
        [True, True, False, True], [False, False, True, False], [True, True, True, False],
        [False, False, False, False], [True, True, True, True],
    ]  # fmt: skip
    assert summary["num_problems"] == 5 and summary["num_samples"] == 4
    # pass@1: mean of 3/4, 1/4, 3/4, 0, 1 = 2.75 / 5
    assert summary["pass@1"] == pytest.approx(0.55)
    # pass@2 = 1 - C(n-c, 2)/C(4, 2) per problem: 1, 1 - 3/6, 1, 0, 1
    assert summary["pass@2"] == pytest.approx((1 + 0.5 + 1 + 0 + 1) / 5)
    # pass@4: a problem counts if any sample is right
    assert summary["pass@4"] == pytest.approx(4 / 5)
    # maj@4: problem 0 right, 1 wrong ("6"), 2: keys 0.5, 1/2, \frac12, 2 all once -> "0.5" (first) is right,
    # 3: only "8" votes -> wrong, 4 right
    assert summary["maj@4"] == pytest.approx(3 / 5)
    # maj@2 over chunks [0:2] and [2:4]: p0: "2" ok, ("3","2") tie -> "3" wrong => 0.5; p1: "6" wrong,
    # ("5",None) -> "5" right => 0.5; p2: 1, ("\frac12","2") -> right => 1; p3: "8" wrong, none => 0; p4: 1
    assert summary["maj@2"] == pytest.approx((0.5 + 0.5 + 1 + 0 + 1) / 5)
    assert summary["length"]["mean"] == pytest.approx(13.0)  # lengths 10, 12, 14, 16 for every problem
    assert summary["truncated_rate"] == pytest.approx(4 / 20)  # the four None answers


def test_default_ks():
    assert default_ks(1) == [] and default_ks(4) == [2, 4] and default_ks(6) == [2, 4, 6]


@pytest.fixture(scope="module")
def tokenizer():
    examples = sft_examples("linear_equation", "train", 200, 0)
    return Tokenizer.train((e[k] for e in examples for k in ("prompt", "response")), vocab_size=320)


def test_reasoning_stops_before_the_first_answer_marker():
    assert (
        reasoning_of("Try: x = 1\nCorrect.\nFinal answer: 1\nFinal answer: 2", FINAL_ANSWER) == "Try: x = 1\nCorrect."
    )
    assert reasoning_of("Try: x = 1", FINAL_ANSWER) == "Try: x = 1"


class RecordingModel:
    """Answers the forced prompt with the last attempt it can see ("Try: x = v"), or 0 if none."""

    def __init__(self, tokenizer):
        self.tokenizer, self.prompts, self.lengths = tokenizer, [], []

    def __call__(self, prompts):
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            self.prompts.append(text)
            self.lengths.append(len(ids))
            tries = [line for line in text.split("\n") if line.startswith("Try: x = ")]
            answer = tries[-1].removeprefix("Try: x = ") if tries else "0"
            out.append(Generation(f" {answer}", 2, False))
        return out


def test_truncation_never_cuts_inside_the_answer_and_accuracy_follows_the_budget(tokenizer):
    suite = TaskSuite("linear_equation", "test", 6)
    traces = []
    for p in suite.problems:  # two wrong tries, then the right one, then the answer line
        x = int(p["answer"])
        traces.append(Generation(
            f"Try: x = {x + 7}\nWrong.\nTry: x = {x + 9}\nWrong.\nTry: x = {x}\nCorrect.\n{FINAL_ANSWER} {x}", 40, False
        ))  # fmt: skip
    model = RecordingModel(tokenizer)
    budgets = [1, 4, 1000]
    curve = scaling_curve(suite, tokenizer, [[t] for t in traces], model, budgets)
    assert len(model.prompts) == len(budgets) * len(suite.problems)
    assert model.lengths == sorted(model.lengths)  # asked shortest first; the curve maps answers back
    for text in model.prompts:
        assert text.endswith(FINAL_ANSWER) and text.count(FINAL_ANSWER) == 1  # the suffix, whole, once
    # Budget 1 shows no complete try: the fake answers 0 (right only when x == 0); the full budget shows
    # the right try last.
    zero = sum(p["answer"] == "0" for p in suite.problems) / len(suite.problems)
    assert curve["accuracy"][0] == pytest.approx(zero)
    assert curve["accuracy"][-1] == 1.0
    full = [len(tokenizer.encode(reasoning_of(t.text, FINAL_ANSWER))) for t in traces]
    assert curve["mean_reasoning_tokens"] == pytest.approx([1, 4, sum(full) / len(full)])
    # right at the full budget; at budget 1 right only where x == 0
    assert curve["gain_by_problem"] == [0 if p["answer"] == "0" else 1 for p in suite.problems]


def test_scaling_rejects_bad_budgets(tokenizer):
    suite = TaskSuite("linear_equation", "test", 1)
    trace = [[Generation("Try: x = 1", 5, True)]]
    for budgets in ([], [8, 4], [4, 4]):
        with pytest.raises(ValueError, match="budgets"):
            scaling_curve(suite, tokenizer, trace, RecordingModel(tokenizer), budgets)


def test_scaling_with_several_traces_averages_them_per_problem(tokenizer):
    suite = TaskSuite("linear_equation", "test", 4)
    xs = [int(p["answer"]) for p in suite.problems]
    wrong = [x + 5 for x in xs]  # never the answer

    def trace(first, last):  # a try the fake answers with at budget 1 (none visible: "0"), then another
        return Generation(f"Try: x = {first}\nWrong.\nTry: x = {last}\nCorrect.\n{FINAL_ANSWER} {last}", 30, False)

    # problem i: three traces; trace k ends at the answer for k < i (capped at 3), else at a wrong value
    traces = [[trace(w, x if k < min(i, 3) else w) for k in range(3)] for i, (x, w) in enumerate(zip(xs, wrong))]
    model = RecordingModel(tokenizer)
    curve = scaling_curve(suite, tokenizer, traces, model, [1, 1000])
    assert len(model.prompts) == 2 * 3 * len(suite.problems)
    assert curve["traces_per_problem"] == 3
    zero = [x == 0 for x in xs]  # at budget 1 the fake answers 0
    right_full = [min(i, 3) / 3 for i in range(4)]  # problem i: min(i, 3) of its 3 traces
    assert curve["accuracy"] == pytest.approx([sum(zero) / 4, sum(right_full) / 4])
    assert curve["gain_by_problem"] == pytest.approx([r - z for r, z in zip(right_full, zero)])


def test_scaling_needs_as_many_traces_for_every_problem(tokenizer):
    suite = TaskSuite("linear_equation", "test", 2)
    one = Generation("Try: x = 1", 5, True)
    for traces in ([[one], [one, one]], [[], []], [[one]]):
        with pytest.raises(ValueError, match="traces"):
            scaling_curve(suite, tokenizer, traces, RecordingModel(tokenizer), [4])
