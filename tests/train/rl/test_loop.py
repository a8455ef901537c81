"""The RL loop end to end on the tiny config: it runs, and a run killed with SIGKILL and
restarted with the same command repeats the uninterrupted run's metrics exactly. (sft_dir, the
SFT run these start from: conftest.py.)"""

import json
import pathlib
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from cli_runner import cli_command, cli_env, rl_args, rl_metric_stream, run_cli

from t1jax.runtime.metrics import read_metrics

pytestmark = pytest.mark.long  # RL runs of the CLI, killed and resumed

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _args(workdir, sft_dir, steps=6):
    return rl_args("tiny.py", workdir, sft_dir, steps)


def test_kill_and_resume_repeats_the_uninterrupted_run(tmp_path, sft_dir):
    full = run_cli(*_args(tmp_path / "full", sft_dir), devices=2)
    assert full.returncode == 0, full.stderr[-3000:]
    summary = json.loads(full.stdout)
    assert summary["final_step"] == 6 and np.isfinite(summary["loss"])
    # The packed update's rows: at most one per sample (K = 4 in configs/tiny.py), a multiple of the
    # 2 devices' batch shards, partly filled.
    assert 0 < summary["update_rows"] <= 4 * summary["groups_trained"] and summary["update_rows"] % 2 == 0
    assert 0 < summary["update_row_fill"] <= 1

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        cli_command(*_args(killed_dir, sft_dir)), env=cli_env(2), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (killed_dir / "checkpoints" / "2").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "checkpoints" / "6").exists(), "the run finished before it could be killed"
    resumed = run_cli(*_args(killed_dir, sft_dir), devices=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["start_step"] >= 2
    assert rl_metric_stream(killed_dir) == rl_metric_stream(tmp_path / "full")
    steps = [r["step"] for r in read_metrics(str(killed_dir / "metrics.jsonl"))]
    assert steps == list(range(1, 7))  # the redone steps are logged once


def test_rl_with_trainable_parameters_moves_only_those_and_resumes(tmp_path, sft_dir):
    """rl.trainable: the other parameters keep the SFT values bit for bit, a run resumes from its
    (masked) optimizer state, and load_run reads the policy."""
    from t1jax import config as config_lib
    from t1jax.runtime.run_dir import load_run

    workdir = tmp_path / "rl"
    args = [*_args(workdir, sft_dir, steps=2), r"--config.rl.trainable=blocks\.1\.mlp\."]
    run_cli(*args, devices=2, check=True)
    resumed = run_cli(*args, "--config.rl.num_steps=4", devices=2, check=True)
    assert json.loads(resumed.stdout)["start_step"] == 2

    config = config_lib.load(str(ROOT / "configs" / "tiny.py"), {"run.workdir": str(workdir)})
    # load_run is the one reader of checkpoints (eval, sample, checks, rl.init_from): it reads RL runs too
    before = load_run(str(sft_dir), config=config)[1]
    after = load_run(str(workdir), config=config)[1]
    moved = {
        name: not np.array_equal(np.asarray(a), np.asarray(b))
        for name, a, b in zip(_names(before), jax.tree.leaves(after), jax.tree.leaves(before))
    }
    assert {name for name, m in moved.items() if m} == {"blocks.1.mlp.down", "blocks.1.mlp.gate", "blocks.1.mlp.up"}


def _names(params):
    from t1jax.train.optimizer import param_name

    return [param_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
