"""RL on a math JSONL end to end (configs/tiny_math.py, the CLI): the symbolic grader rewards the
samples, bad rows are counted at start and in the summary, grading time and timeouts are in
metrics.jsonl, and (a long test) a run killed with SIGKILL resumes and repeats the uninterrupted
run's metrics."""

import json
import pathlib
import signal
import subprocess
import time

import pytest
from cli_runner import cli_command, cli_env, rl_args, rl_metric_stream, run_cli

from t1jax.runtime.metrics import read_metrics

pytestmark = pytest.mark.slow  # RL runs of the CLI

ROOT = pathlib.Path(__file__).resolve().parents[3]
GOOD = 10


def _math_file(path):
    """GOOD usable rows in GSM8K's layout, and one bad row of each kind."""
    rows = [{"question": f"What is {a} plus {a + 1}?", "answer": f"{a}+{a + 1}\n#### {2 * a + 1}"} for a in range(GOOD)]
    rows += [
        {"question": "And this one?", "answer": "no final answer"},
        {"question": "Unreadable?", "answer": "#### ((("},
        {"question": "Long? " + "very " * 400, "answer": "#### 1"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    return path


def _args(workdir, sft_dir, data, steps=6):
    return rl_args("tiny_math.py", workdir, sft_dir, steps, f"--config.rl.data_path={data}")


def test_math_rl_grades_and_reports(tmp_path, sft_dir):
    data = _math_file(tmp_path / "train.jsonl")
    full = run_cli(*_args(tmp_path / "full", sft_dir, data), devices=2)
    assert full.returncode == 0, full.stderr[-3000:]
    start_lines = [line for line in full.stderr.splitlines() if "RL prompts from" in line]
    assert start_lines == [
        f"t1jax: RL prompts from {data}: {GOOD} usable of {GOOD + 4} rows; skipped 1 not a JSON object, "
        "1 without an answer, 1 with an answer the grader cannot read, 1 longer than sampling.max_prompt_len"
    ]
    summary = json.loads(full.stdout)
    assert summary["final_step"] == 6 and summary["data_problems"] == GOOD
    skipped = {k: v for k, v in summary.items() if k.startswith("data_skipped_")}
    assert skipped == {
        "data_skipped_unreadable_line": 1,
        "data_skipped_no_problem": 0,
        "data_skipped_no_answer": 1,
        "data_skipped_unreadable_answer": 1,
        "data_skipped_too_long": 1,
    }
    records = read_metrics(str(tmp_path / "full" / "metrics.jsonl"))
    assert [r["step"] for r in records] == list(range(1, 7))
    samples = 4 * 4  # configs/tiny.py: 4 prompts x 4 samples, one round (no filter, so no refill)
    for r in records:
        assert 0 <= r["accuracy"] <= 1 and -1 <= r["reward"] <= 1 and r["groups_sampled"] == 4
        assert r["time_grade"] > 0 and 0 <= r["time_grade_wait"] <= r["time_sample_grade"]
        assert r["grade_timeouts"] == 0 and r["grade_errors"] == 0 and 0 <= r["grade_no_answer"] <= samples


@pytest.mark.long  # two more RL runs of the CLI, one killed
def test_math_rl_resumes_after_kill_as_if_uninterrupted(tmp_path, sft_dir):
    data = _math_file(tmp_path / "train.jsonl")
    full = run_cli(*_args(tmp_path / "full", sft_dir, data), devices=2)
    assert full.returncode == 0, full.stderr[-3000:]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        cli_command(*_args(killed_dir, sft_dir, data)), env=cli_env(2), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (killed_dir / "checkpoints" / "2").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "checkpoints" / "6").exists(), "the run finished before it could be killed"
    resumed = run_cli(*_args(killed_dir, sft_dir, data), devices=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["start_step"] >= 2
    assert rl_metric_stream(killed_dir) == rl_metric_stream(tmp_path / "full")
