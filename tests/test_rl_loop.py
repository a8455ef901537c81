"""The RL loop end to end on the tiny config: it runs, and a run killed with SIGKILL and
restarted with the same command repeats the uninterrupted run's metrics exactly."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from t1jax.train.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMING = ("time_sample_grade", "time_update", "sampled_tokens_per_s")


def _command(workdir, sft_dir, steps=6):
    return [
        sys.executable,
        "-m",
        "t1jax",
        "rl",
        "--config",
        str(ROOT / "configs" / "tiny.py"),
        f"--config.run.workdir={workdir}",
        f"--config.rl.init_from={sft_dir}",
        f"--config.rl.num_steps={steps}",
        "--config.rl.filter_zero_variance=false",
        "--config.checkpoint.save_every=2",
        "--config.checkpoint.async_save=false",
    ]


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sft")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "t1jax",
            "sft",
            "--config",
            str(ROOT / "configs" / "tiny.py"),
            f"--config.run.workdir={workdir}",
            "--config.sft.num_steps=2",
        ],
        check=True,
        env=_env(),
        capture_output=True,
        cwd=ROOT,
        timeout=600,
    )
    return workdir


def _stream(workdir):
    """The last record of every step (a killed run may have logged a step it then redid)."""
    by_step = {r["step"]: r for r in read_metrics(str(workdir / "metrics.jsonl"))}
    return [{k: v for k, v in by_step[s].items() if k not in TIMING} for s in sorted(by_step)]


def test_kill_and_resume_repeats_the_uninterrupted_run(tmp_path, sft_dir):
    full = subprocess.run(
        _command(tmp_path / "full", sft_dir), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 0, full.stderr[-3000:]
    summary = json.loads(full.stdout)
    assert summary["final_step"] == 6 and np.isfinite(summary["loss"])
    # The packed update's rows: at most one per sample (K = 4 in configs/tiny.py), a multiple of the
    # 2 devices' batch shards, partly filled.
    assert 0 < summary["update_rows"] <= 4 * summary["groups_trained"] and summary["update_rows"] % 2 == 0
    assert 0 < summary["update_row_fill"] <= 1

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(killed_dir, sft_dir), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (killed_dir / "checkpoints" / "2").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "checkpoints" / "6").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(
        _command(killed_dir, sft_dir), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["start_step"] >= 2
    assert _stream(killed_dir) == _stream(tmp_path / "full")


def test_rl_with_trainable_parameters_moves_only_those_and_resumes(tmp_path, sft_dir):
    """rl.trainable: the other parameters keep the SFT values bit for bit, a run resumes from its
    (masked) optimizer state, and every reader of checkpoints (eval, sample) loads the policy."""
    from t1jax import config as config_lib
    from t1jax.eval.policies import load_policy
    from t1jax.sample_command import load_run

    workdir = tmp_path / "rl"
    command = [*_command(workdir, sft_dir, steps=2), r"--config.rl.trainable=blocks\.1\.mlp\."]
    first = subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = subprocess.run(
        [*command, "--config.rl.num_steps=4"], env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["start_step"] == 2

    config = config_lib.load(str(ROOT / "configs" / "tiny.py"), {"run.workdir": str(workdir)})
    before, _ = load_policy(config, str(sft_dir))
    after, _ = load_policy(config, str(workdir))
    moved = {
        name: not np.array_equal(np.asarray(a), np.asarray(b))
        for name, a, b in zip(_names(before), jax.tree.leaves(after), jax.tree.leaves(before))
    }
    assert {name for name, m in moved.items() if m} == {"blocks.1.mlp.down", "blocks.1.mlp.gate", "blocks.1.mlp.up"}
    _, sampled_params, _ = load_run(config)  # `t1jax sample` reads an RL run too
    for a, b in zip(jax.tree.leaves(sampled_params), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _names(params):
    from t1jax.train.optimizer import param_name

    return [param_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
