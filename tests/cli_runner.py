"""Running the `t1jax` command line in a subprocess, as a user would (conftest's `t1jax_cli`)."""

import os
import pathlib
import subprocess
import sys

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
