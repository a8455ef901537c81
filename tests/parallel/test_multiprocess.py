"""Two local processes (the multi-host code path: jax.distributed, per-process data shards,
global arrays from local rows) train and evaluate exactly like one process with the same devices."""

import json
import pathlib
import socket
import subprocess

import numpy as np
import pytest
from cli_runner import cli_command, cli_env

from t1jax.runtime.metrics import read_metrics

pytestmark = pytest.mark.slow  # SFT, RL and eval in two processes and in one

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _launch(workdir, devices_per_process, process_id=None, port=None):
    return _launch_command(
        ["sft", f"--config.run.workdir={workdir}", "--config.sft.num_steps=4"], devices_per_process, process_id, port
    )


def _launch_command(command, devices_per_process, process_id=None, port=None):
    args = cli_command(command[0], "--config", ROOT / "configs" / "tiny.py", *command[1:])
    if process_id is not None:
        args += [
            f"--config.distributed.coordinator_address=127.0.0.1:{port}",
            "--config.distributed.num_processes=2",
            f"--config.distributed.process_id={process_id}",
        ]
    env = cli_env(devices_per_process)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(str(workdir / "metrics.jsonl")) if "loss" in r]


def test_two_processes_match_one(tmp_path):
    port = _free_port()
    workers = [_launch(tmp_path / "two", 2, i, port) for i in range(2)]
    single = _launch(tmp_path / "one", 4)
    for proc in [*workers, single]:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert [s for s, _ in two] == [1, 2, 3, 4] and [s for s, _ in one] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in two], [v for _, v in one], rtol=1e-5)


def _two_and_one(command_for):
    """Runs command_for(name) as 2 processes x 1 device ("two") and as 1 process x 2 devices ("one")."""
    port = _free_port()
    workers = [_launch_command(command_for("two"), 1, i, port) for i in range(2)]
    single = _launch_command(command_for("one"), 2)
    for proc in [*workers, single]:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]


def _untimed(workdir):
    """The metric lines without the wall-clock figures (time_*, *_per_s)."""
    rows = read_metrics(str(workdir / "metrics.jsonl"))
    return [{k: v for k, v in r.items() if not k.startswith("time") and not k.endswith("per_s")} for r in rows]


@pytest.mark.long
def test_rl_and_eval_two_processes_match_one(tmp_path):
    """RL (every group trained, so each step updates; packed rows, 2 minibatches of 2 micro-batches,
    2 of 4 samples kept) and eval. Both layouts run the same programs on a mesh of two devices,
    so the figures are equal exactly: the only cross-device sums add two numbers, whichever
    process holds them."""
    sft = tmp_path / "sft"
    proc = _launch(sft, 1)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    rl_flags = [
        "--config.rl.num_steps=3",
        "--config.rl.filter_zero_variance=false",
        "--config.rl.pack=true",
        "--config.rl.minibatches=2",
        "--config.rl.grad_accum_steps=2",
        "--config.rl.keep_per_prompt=2",
    ]
    _two_and_one(
        lambda name: [
            "rl",
            f"--config.run.workdir={tmp_path / ('rl_' + name)}",
            f"--config.rl.init_from={sft}",
            *rl_flags,
        ]
    )
    two, one = _untimed(tmp_path / "rl_two"), _untimed(tmp_path / "rl_one")
    assert [r["step"] for r in one] == [1, 2, 3] and all(r["groups_trained"] == 4 for r in one)
    assert all(np.isfinite(r["loss"]) and r["update_rows"] > 0 for r in one)
    assert two == one

    eval_flags = [
        "--config.eval.num_problems=12",
        "--config.eval.batch_prompts=8",
        "--config.eval.sampling.num_samples=2",
        "--config.eval.sampling.max_new_tokens=32",
        "--config.eval.budgets=8,16",
        "--config.eval.answer_tokens=8",
    ]
    _two_and_one(lambda name: ["eval", "--run", tmp_path / "rl_one", "--out", tmp_path / ("eval_" + name), *eval_flags])
    for name in ("eval.json", "samples.jsonl"):
        assert (tmp_path / "eval_two" / name).read_text() == (tmp_path / "eval_one" / name).read_text()
    assert json.loads((tmp_path / "eval_one" / "eval.json").read_text())["metrics"]["num_problems"] == 12
