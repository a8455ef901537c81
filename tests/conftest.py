"""Eight simulated CPU devices for every test (set before JAX is imported anywhere), the
repository's paths, and `t1jax_cli`: the one way tests run the command line."""

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # helper modules shared by tests (small_model.py)


from cli_runner import run_cli  # noqa: E402


@pytest.fixture(scope="session")
def t1jax_cli():
    """run_cli: `t1jax_cli("sft", "--config", path, ...)` -> subprocess.CompletedProcess."""
    return run_cli


@pytest.fixture
def tiny_config_path() -> str:
    return str(ROOT / "configs" / "tiny.py")
