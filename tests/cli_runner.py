"""Running the `t1jax` command line in a subprocess, as a user would (conftest's `t1jax_cli`)."""

import os
import pathlib
import subprocess
import sys

from t1jax.runtime.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "t1jax", *map(str, args)]


def cli_env(devices: int | None = None) -> dict:
    """The environment of a t1jax subprocess: CPU, with `devices` simulated devices (default: the
    tests' eight)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def run_cli(*args, devices: int | None = None, timeout: float = 600, check: bool = False):
    """Runs `python -m t1jax ARGS...` in the repository root; returns the CompletedProcess (text).
    With check=True a failure shows the end of its stderr."""
    done = subprocess.run(
        cli_command(*args), capture_output=True, text=True, cwd=ROOT, env=cli_env(devices), timeout=timeout
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


RL_TIMINGS = ("time_sample_grade", "time_update", "sampled_tokens_per_s", "time_grade", "time_grade_wait")


def rl_args(config: str, workdir, sft_dir, steps: int, *extra) -> list:
    """`t1jax rl` of configs/<config> from the SFT run `sft_dir`, every step updating (no
    zero-variance filter), checkpoints every 2 steps written synchronously (a kill leaves them whole)."""
    return [
        "rl",
        "--config",
        ROOT / "configs" / config,
        f"--config.run.workdir={workdir}",
        f"--config.rl.init_from={sft_dir}",
        f"--config.rl.num_steps={steps}",
        "--config.rl.filter_zero_variance=false",
        "--config.checkpoint.save_every=2",
        "--config.checkpoint.async_save=false",
        *extra,
    ]


def rl_metric_stream(workdir) -> list[dict]:
    """The last record of every step of an RL run, without timings (a killed run may have logged
    a step it then redid): what a resumed run must repeat exactly."""
    by_step = {r["step"]: r for r in read_metrics(str(pathlib.Path(workdir) / "metrics.jsonl"))}
    return [{k: v for k, v in by_step[s].items() if k not in RL_TIMINGS} for s in sorted(by_step)]
