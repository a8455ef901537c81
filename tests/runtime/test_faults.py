"""Fault injection on the command line: runs killed at random points, damaged newest checkpoints and
a full disk. Each fault ends in one of two outcomes: the run recovers exactly (the resumed run's
metrics equal an uninterrupted run's, each step logged once) or it stops with one clean line and
the checkpoints saved before the fault intact. (Non-finite SFT steps: tests/train/test_sft.py;
random damage to checkpoint files: test_checkpoint_damage.py.)"""

import errno
import json
import logging
import random
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from cli_runner import ROOT, cli_command, cli_env, run_cli

from t1jax import config as config_lib
from t1jax.apps import cli
from t1jax.runtime.metrics import read_metrics
from t1jax.runtime.run_dir import checkpoint_steps, load_run

TINY = ROOT / "configs" / "tiny.py"
TIMING = ("tokens_per_s", "time_sample_grade", "time_update", "sampled_tokens_per_s", "time_grade", "time_grade_wait")
SEEDS = (0, 1, 2)


def _sft_args(workdir, steps=16):
    return ["sft", "--config", TINY, f"--config.run.workdir={workdir}", f"--config.sft.num_steps={steps}",
            "--config.run.log_every=1", "--config.checkpoint.save_every=2", "--config.sft.eval_every=4"]  # fmt: skip


def _rl_args(workdir, sft_dir, steps=8):
    return ["rl", "--config", TINY, f"--config.run.workdir={workdir}", f"--config.rl.init_from={sft_dir}",
            f"--config.rl.num_steps={steps}", "--config.rl.filter_zero_variance=false",
            "--config.checkpoint.save_every=2"]  # fmt: skip


def _records(workdir) -> list[dict]:
    """metrics.jsonl without its timings."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(str(workdir / "metrics.jsonl"))]


def _kill_at_random_point(args, workdir, rng: random.Random, max_records: int) -> int:
    """Starts `t1jax ARGS`, SIGKILLs it once a random number of metric records is written and a
    random further delay has passed (so kills land in steps, saves and logging alike); returns the
    number of records there were when it died."""
    proc = subprocess.Popen(
        cli_command(*args), env=cli_env(2), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target, delay = rng.randint(1, max_records), rng.uniform(0.0, 1.0)
    metrics, deadline = workdir / "metrics.jsonl", time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= target:
            break
        time.sleep(0.02)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


def _check_recovered_exactly(workdir, reference):
    records = _records(workdir)
    assert records == _records(reference)  # same values, each record once, in step order
    keys = [(r["step"], tuple(sorted(r))) for r in records]
    assert len(keys) == len(set(keys))


@pytest.fixture(scope="module")
def sft_reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sft_reference") / "run"
    run_cli(*_sft_args(workdir), devices=2, check=True)
    return workdir


@pytest.fixture(scope="module")
def rl_start(tmp_path_factory):
    """An SFT run for RL to start from, and an uninterrupted RL run from it."""
    base = tmp_path_factory.mktemp("rl_reference")
    run_cli(*_sft_args(base / "sft", steps=4), devices=2, check=True)
    run_cli(*_rl_args(base / "rl", base / "sft"), devices=2, check=True)
    return base / "sft", base / "rl"


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_sft_killed_at_a_random_point_resumes_exactly(tmp_path, sft_reference, seed):
    workdir = tmp_path / "run"
    _kill_at_random_point(_sft_args(workdir), workdir, random.Random(seed), max_records=18)
    run_cli(*_sft_args(workdir), devices=2, check=True)
    _check_recovered_exactly(workdir, sft_reference)


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_rl_killed_at_a_random_point_resumes_exactly(tmp_path, rl_start, seed):
    sft_dir, reference = rl_start
    workdir = tmp_path / "run"
    _kill_at_random_point(_rl_args(workdir, sft_dir), workdir, random.Random(seed), max_records=7)
    run_cli(*_rl_args(workdir, sft_dir), devices=2, check=True)
    _check_recovered_exactly(workdir, reference)


@pytest.mark.long
@pytest.mark.slow
def test_sft_resumes_from_the_step_before_a_damaged_newest_one(tmp_path, sft_reference):
    workdir = tmp_path / "run"
    shutil.copytree(sft_reference, workdir)  # a finished run of 16 steps
    newest = workdir / "checkpoints" / "16" / "state"
    largest = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    largest.write_bytes(bytes(data))
    resumed = run_cli(*_sft_args(workdir), devices=2, check=True)  # the same command again
    assert json.loads(resumed.stdout)["start_step"] == 14
    assert "t1jax: warning: " in resumed.stderr and "step 16" in resumed.stderr
    _check_recovered_exactly(workdir, sft_reference)  # steps 15 and 16 redone, logged once


def test_a_full_disk_is_one_line_and_keeps_the_saved_steps(tmp_path, monkeypatch, capsys):
    """The disk fills up during the second save (simulated: Orbax's save raises ENOSPC)."""
    real_save, calls = ocp.CheckpointManager.save, []

    def save(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    # cli.main quiets Orbax's loggers and unraisable hook for the process; undone after the test
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    for name in ("absl", "asyncio"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    workdir = tmp_path / "run"
    code = cli.main([str(a) for a in _sft_args(workdir, steps=6)] + ["--config.run.progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        f"t1jax: error: could not save step 4 to {workdir / 'checkpoints'}: no space left on the device; "
        "the steps saved before it are intact (2 is the newest)"
    )
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    assert checkpoint_steps(workdir) == [2]
    params = load_run(workdir, config=config_lib.load(str(TINY)))[1]  # restores and verifies
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params))


@pytest.mark.long
@pytest.mark.slow
def test_a_full_tmpfs_is_one_line_and_the_run_resumes_elsewhere(tmp_path, sft_reference):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    # 600 KiB: the tiny model's first checkpoint fits, the second does not
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the simulated full disk above covers the error path)")
    try:
        done = run_cli(*_sft_args(mount / "run"), devices=2)
        assert done.returncode == 2
        lines = [line for line in done.stderr.splitlines() if not line.startswith(("sft data:", "W", "I"))]
        assert lines == [
            f"t1jax: error: could not save step 4 to {mount / 'run' / 'checkpoints'}: no space left on the device; "
            "the steps saved before it are intact (2 is the newest)"
        ], done.stderr[-3000:]
        shutil.copytree(mount / "run", tmp_path / "run")  # the user moves the run to a bigger disk
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    resumed = run_cli(*_sft_args(tmp_path / "run"), devices=2, check=True)
    assert json.loads(resumed.stdout)["start_step"] == 2
    _check_recovered_exactly(tmp_path / "run", sft_reference)


@pytest.mark.long
@pytest.mark.slow
def test_rl_stops_at_a_non_finite_step_with_only_finite_checkpoints(tmp_path, rl_start):
    """rl.learning_rate 1e8 throws the weights far enough that a later step's loss, gradient or
    update is not finite: the run exits 2 with one line and keeps only finite checkpoints."""
    sft_dir, _ = rl_start
    workdir = tmp_path / "run"
    args = [*_rl_args(workdir, sft_dir, steps=12), "--config.rl.learning_rate=1e8", "--config.rl.warmup_steps=0"]
    done = run_cli(*args, "--config.checkpoint.save_every=1", devices=2)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("t1jax: error: RL step ") and "not finite" in last and "Traceback" not in done.stderr
    failed_at = int(last.split("RL step ")[1].split(":")[0])
    steps = checkpoint_steps(workdir)
    assert max(steps, default=0) < failed_at
    config = config_lib.load(str(TINY))
    for step in steps:
        params = load_run(workdir, step, config=config)[1]
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params)), step
