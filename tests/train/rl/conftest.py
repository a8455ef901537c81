"""The SFT run that the RL end-to-end tests start from (trained once per test session)."""

import pathlib

import pytest
from cli_runner import run_cli

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def sft_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sft")
    tiny = ROOT / "configs" / "tiny.py"
    run_cli(
        "sft", "--config", tiny, f"--config.run.workdir={workdir}", "--config.sft.num_steps=2", devices=2, check=True
    )
    return workdir
