"""Two local processes (the multi-host code path: jax.distributed, per-process data shards,
global arrays from local rows) train exactly like one process with the same devices."""

import pathlib
import socket
import subprocess

import numpy as np
import pytest
from cli_runner import cli_command, cli_env

from t1jax.runtime.metrics import read_metrics

pytestmark = pytest.mark.slow  # SFT in two processes and in one

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _launch(workdir, devices_per_process, process_id=None, port=None):
    args = cli_command(
        "sft", "--config", ROOT / "configs" / "tiny.py", f"--config.run.workdir={workdir}", "--config.sft.num_steps=4"
    )
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
