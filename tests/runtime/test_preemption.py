"""SIGTERM (a preempted TPU VM) and SIGINT stop a run after the step in progress, which is saved:
one line, the signal's exit code, and a rerun resumes from that step."""

import json
import signal
import subprocess
import time

import pytest
from cli_runner import ROOT, cli_command, cli_env, run_cli

from t1jax.runtime.metrics import read_metrics

TINY = ROOT / "configs" / "tiny.py"


def _stop_after_some_steps(args, workdir, sig, log_every=2):
    """Starts `t1jax ARGS`, sends `sig` once a few steps are logged; returns (exit code, stderr)."""
    proc = subprocess.Popen(
        cli_command(*args), env=cli_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics, deadline = workdir / "metrics.jsonl", time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.long)])
def test_sft_saves_the_step_it_finished_and_resumes_from_it(tmp_path, sig):
    workdir = tmp_path / "sft"
    args = ["sft", "--config", TINY, f"--config.run.workdir={workdir}", "--config.sft.num_steps=400",
            "--config.run.log_every=1", "--config.checkpoint.save_every=1000"]  # fmt: skip
    code, err = _stop_after_some_steps(args, workdir, sig)
    assert code == 128 + sig, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"t1jax: stopped by {signal.Signals(sig).name} after step ") and "Traceback" not in err
    stopped_at = int(last.split("after step ")[1].split(",")[0])
    assert 1 <= stopped_at < 400
    assert (workdir / "checkpoints" / str(stopped_at)).is_dir()  # saved although save_every is 1000
    resumed = run_cli(*args[:-3], f"--config.sft.num_steps={stopped_at + 2}", devices=2, check=True)
    assert json.loads(resumed.stdout)["start_step"] == stopped_at  # no step lost
    steps = [r["step"] for r in read_metrics(str(workdir / "metrics.jsonl")) if "loss" in r and "val_loss" not in r]
    assert steps == list(range(1, stopped_at + 3))


@pytest.mark.long  # the SFT run above covers the signal handling; this one the RL loop's save
def test_rl_saves_the_step_it_finished_and_resumes_from_it(tmp_path):
    sft = tmp_path / "sft"
    run_cli("sft", "--config", TINY, f"--config.run.workdir={sft}", "--config.sft.num_steps=2", devices=2, check=True)
    workdir = tmp_path / "rl"
    args = ["rl", "--config", TINY, f"--config.run.workdir={workdir}", f"--config.rl.init_from={sft}",
            "--config.rl.num_steps=100", "--config.checkpoint.save_every=1000"]  # fmt: skip
    code, err = _stop_after_some_steps(args, workdir, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    stopped_at = int(err.strip().splitlines()[-1].split("after step ")[1].split(",")[0])
    assert (workdir / "checkpoints" / str(stopped_at)).is_dir()
    resumed = run_cli(*args[:-2], f"--config.rl.num_steps={stopped_at + 1}", devices=2, check=True)
    assert json.loads(resumed.stdout)["start_step"] == stopped_at
    steps = [r["step"] for r in read_metrics(str(workdir / "metrics.jsonl"))]
    assert steps == list(range(1, stopped_at + 2))
