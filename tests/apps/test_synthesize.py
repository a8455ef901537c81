"""`t1jax synthesize`: a run's own attempts, graded, become T1 traces that `t1jax sft` trains on."""

import json
import pathlib

import pytest
from cli_runner import run_cli

from t1jax import config as config_lib
from t1jax.apps.synthesize import run_synthesize
from t1jax.data.benchmarks import boxed_prompt
from t1jax.errors import CheckpointError, ConfigError, DataError
from t1jax.eval.generation import Generation

PROBLEMS = [
    {"id": "a", "problem": "What is 3 + 4?", "answer": "7", "solution": "3 + 4 = 7."},
    {"id": "b", "problem": "What is 2 * 5?", "answer": "10", "solution": "2 * 5 = \\boxed{10}."},
    {"id": "c", "problem": "What is 9 - 1?", "answer": "8"},  # no solution
    {"id": "d", "problem": "Half of 1?", "answer": "\\frac{1}{2}", "solution": "It is $\\frac{1}{2}$."},
]
# What the fake model answers to each problem, three attempts each.
ATTEMPTS = {
    "What is 3 + 4?": ["3 + 4 = 12. \\boxed{12}", "3 + 4 = 7. \\boxed{7}", "It is \\boxed{7}"],
    "What is 2 * 5?": ["2 * 5 = 25. \\boxed{25}", "no idea", "2 * 5 = 25. \\boxed{ 25}"],
    "What is 9 - 1?": ["\\boxed{10}", "\\boxed{10}", "\\boxed{11}"],
    "Half of 1?": ["It is \\boxed{0.5}", "\\boxed{2}", "hmm \\boxed{1/2"],  # the last one is cut off
}
REJECT = (
    "Check: this gives {0}, but {0} does not match the correct answer, so this attempt has a mistake. Let me try again."
)
ACCEPT = "Check: this gives {0}, which matches the correct answer."
NO_ANSWER = "Check: this attempt does not reach a final answer. Let me try again."
TINY = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "tiny.py")


def fake_model(prompts, num_samples):
    assert num_samples == 3
    out = []
    for prompt in prompts:
        texts = ATTEMPTS[prompt.split("\n")[0]]
        out.append([Generation(t, 5, truncated=t.endswith("1/2")) for t in texts])
    return out


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return path


def _synthesize(tmp_path, problems, out="traces.jsonl", **options):
    config = config_lib.load(None, {"run.progress": False})
    options = {"num_attempts": 3, "generate": fake_model, **options}
    summary = run_synthesize(config, "unused", str(problems), str(tmp_path / out), **options)
    return summary, [json.loads(line) for line in (tmp_path / out).read_text().splitlines()]


def test_counts_and_traces_from_graded_attempts(tmp_path, problems, capsys):
    summary, lines = _synthesize(tmp_path, problems, max_wrong=2)
    expected = {
        "problems": 4,
        "attempts": 12,
        "right_attempts": 3,  # a: two, d: 0.5
        "wrong_attempts": 7,  # a: 12; b: 25 twice; c: all three; d: 2
        "no_answer_attempts": 2,  # b: "no idea"; d: the cut-off box
        "ungraded_attempts": 0,
        "truncated_attempts": 1,
        "problems_with_a_right_attempt": 2,
        "traces": 2,
        "traces_from_reference": 0,
        "problems_left_out": 2,  # b and c
    }
    assert {k: summary[k] for k in expected} == expected
    assert [line["id"] for line in lines] == ["a", "d"]
    for line, problem in zip(lines, (PROBLEMS[0], PROBLEMS[3])):
        assert line["prompt"] == boxed_prompt(problem["problem"]) and line["answer"] == problem["answer"]
        assert line["response"].endswith(f"\n\nThe final answer is \\boxed{{{problem['answer']}}}.")
        assert line["response"].count("\\boxed") == 1 and not line["from_reference"]
    a, d = (line["response"].split("\n\n") for line in lines)
    assert a[-2] in ("3 + 4 = 7. 7\n" + ACCEPT.format(7), "It is 7\n" + ACCEPT.format(7))
    assert a[:-2] in ([], ["3 + 4 = 12. 12\n" + REJECT.format(12)])
    assert d[-2] == "It is 0.5\n" + ACCEPT.format(0.5) and d[:-2] in ([], ["2\n" + REJECT.format(2)])
    assert [line["num_wrong"] for line in lines] == [len(a) - 2, len(d) - 2]
    err = capsys.readouterr().err
    assert "synthesize: 4 problems, 12 attempts, 3 right; 2 traces (0 completed from the reference), " in err


def test_the_reference_completes_problems_that_have_one(tmp_path, problems):
    summary, lines = _synthesize(tmp_path, problems, reference="solution", max_wrong=1)
    assert (summary["traces"], summary["traces_from_reference"], summary["problems_left_out"]) == (3, 1, 1)
    assert [(line["id"], line["from_reference"]) for line in lines] == [("a", False), ("b", True), ("d", False)]
    b = lines[1]["response"].split("\n\n")
    assert b[-2:] == ["2 * 5 = 10.\n" + ACCEPT.format(10), "The final answer is \\boxed{10}."]
    assert b[:-2] in ([], ["2 * 5 = 25. 25\n" + REJECT.format(25)], ["no idea\n" + NO_ANSWER])


def test_the_same_seed_gives_the_same_file(tmp_path, problems):
    first = _synthesize(tmp_path, problems, "one.jsonl", seed=3, reference="solution")[1]
    again = _synthesize(tmp_path, problems, "two.jsonl", seed=3, reference="solution")[1]
    assert first == again
    others = [_synthesize(tmp_path, problems, f"s{s}.jsonl", seed=s, reference="solution")[1] for s in range(6)]
    assert any(lines != first for lines in others)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"num_attempts": 0}, ConfigError, "--num_attempts must be >= 1, got 0"),
        ({"max_wrong": -1}, ConfigError, "--max_wrong must be >= 0, got -1"),
        ({"batch_prompts": 0}, ConfigError, "--batch_prompts must be >= 1, got 0"),
        ({"reference": "proof"}, DataError, "--reference proof: no record of .* has a non-empty 'proof'"),
        ({"answer_field": "solution"}, DataError, "line 3: missing field 'solution'"),
        ({"problem_field": "question"}, DataError, "line 1: missing field 'question'"),
    ],
)
def test_bad_options_are_named(tmp_path, problems, options, error, message):
    with pytest.raises(error, match=message):
        _synthesize(tmp_path, problems, **options)
    assert not (tmp_path / "traces.jsonl").exists()


def test_bad_data_and_outputs_are_named(tmp_path, problems):
    config = config_lib.load(None, {"run.progress": False})
    with pytest.raises(DataError, match="data file not found: .*nope.jsonl"):
        run_synthesize(config, "unused", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl"), generate=fake_model)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl holds no valid records"):
        run_synthesize(config, "unused", str(tmp_path / "empty.jsonl"), str(tmp_path / "o.jsonl"), generate=fake_model)
    with pytest.raises(ConfigError, match="needs --data FILE .* and --out FILE"):
        run_synthesize(config, "unused", str(problems), None)
    with pytest.raises(ConfigError, match="is a folder; give a file name"):
        run_synthesize(config, "unused", str(problems), str(tmp_path), generate=fake_model)
    greedy = config_lib.load(None, {"sampling.temperature": 0.0})
    with pytest.raises(ConfigError, match="greedy.*gives 8 identical attempts"):
        run_synthesize(greedy, "unused", str(problems), str(tmp_path / "o.jsonl"))
    with pytest.raises(CheckpointError, match="--run=.*norun is not a run directory"):
        run_synthesize(config, str(tmp_path / "norun"), str(problems), str(tmp_path / "o.jsonl"))


def test_the_command_line_gives_one_line_errors(t1jax_cli, tmp_path, problems):
    for args, message in (
        (["--run", tmp_path / "norun", "--data", problems, "--out", tmp_path / "o.jsonl"], "is not a run directory"),
        (["--data", problems, "--out", tmp_path / "o.jsonl", "--max_wrong", "x"], "--max_wrong must be int"),
    ):
        done = t1jax_cli("synthesize", *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# A tiny run trained to answer every question with "So \boxed{7}": right on the problems whose
# answer is 7, wrong on the others.
SEVENS = [{"problem": f"What is {i} + {7 - i}?", "answer": "7", "solution": f"{i} + {7 - i} = 7."} for i in range(4)]
EIGHTS = [{"problem": f"What is {i} + {8 - i}?", "answer": "8", "solution": f"{i} + {8 - i} = 8."} for i in range(3)]


@pytest.fixture(scope="module")
def sevens_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sevens")
    examples = [{"prompt": boxed_prompt(p["problem"]), "response": "So \\boxed{7}"} for p in SEVENS + EIGHTS]
    (directory / "sft.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples * 8))
    problems = directory / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in SEVENS + EIGHTS))
    run_cli(
        "sft", "--config", TINY, f"--config.sft.data_path={directory / 'sft.jsonl'}",
        "--config.sft.num_steps=30", "--config.optim.learning_rate=0.01", f"--config.run.workdir={directory / 'run'}",
        check=True,
    )  # fmt: skip
    return directory / "run", problems


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.parametrize("reference", [False, True])
def test_synthesize_from_a_trained_run_and_train_on_the_result(t1jax_cli, tmp_path, sevens_run, reference):
    run, problems = sevens_run
    out = tmp_path / "traces.jsonl"
    args = ["--config", TINY, "--run", run, "--data", problems, "--out", out, "--num_attempts", "4"]
    done = t1jax_cli("synthesize", *args, *(["--reference", "solution"] if reference else []),
                     "--config.sampling.max_new_tokens=12", check=True)  # fmt: skip
    summary = json.loads(done.stdout)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert summary["problems"] == 7 and summary["attempts"] == 28
    assert summary["right_attempts"] > 0 and summary["traces"] == len(lines)
    assert summary["traces_from_reference"] == sum(line["from_reference"] for line in lines)
    assert summary["problems_left_out"] == 7 - len(lines)
    assert summary["problems_with_a_right_attempt"] == sum(not line["from_reference"] for line in lines)
    assert f"{summary['traces']} traces ({summary['traces_from_reference']} completed" in done.stderr
    for number, problem in enumerate(SEVENS + EIGHTS, start=1):  # ids: line numbers
        line = by_id.get(str(number))
        if line is None:
            assert not reference and problem["answer"] == "8"  # only where no attempt could be right
            continue
        assert line["prompt"] == boxed_prompt(problem["problem"])
        assert line["response"].endswith(f"Check: this gives {problem['answer']}, which matches the correct answer.\n\n"
                                         f"The final answer is \\boxed{{{problem['answer']}}}.")  # fmt: skip
        assert line["from_reference"] == (problem["answer"] == "8")
    if reference:  # every problem has a solution: all are kept
        assert summary["traces"] == 7 and summary["traces_from_reference"] == 3
        # The run trains on its own traces (its tokenizer and weights), the loss on the responses.
        done = t1jax_cli(
            "sft", "--config", TINY, f"--config.sft.data_path={out}", f"--config.sft.init_from={run}",
            "--config.sft.num_steps=2", f"--config.run.workdir={tmp_path / 'again'}", check=True,
        )  # fmt: skip
        trained = json.loads(done.stdout)
        assert trained["final_step"] == 2 and trained["num_train_examples"] + trained["num_eval_examples"] == 7
