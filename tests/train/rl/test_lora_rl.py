"""`t1jax rl` with LoRA from a full SFT run (sft_dir: conftest.py): the run keeps the SFT weights
once as its frozen base, a run cut short after a checkpoint resumes to the uninterrupted run's
metrics and adapters, and load_run reads the policy as the base with its adapters merged in."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from cli_runner import rl_args, rl_metric_stream, run_cli

from t1jax import config as config_lib
from t1jax.model import lora
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.lora_run import read_base
from t1jax.runtime.run_dir import load_run
from t1jax.train.state import layout_from_config

pytestmark = pytest.mark.long  # RL runs of the CLI

ROOT = pathlib.Path(__file__).resolve().parents[3]
LORA = ("--config.model.lora_rank=4", "--config.model.lora_alpha=8", "--config.rl.learning_rate=1e-3")


def _args(workdir, sft_dir, steps=4):
    return rl_args("tiny.py", workdir, sft_dir, steps, *LORA)


def _checkpoint(workdir, layout, step):
    """{"policy": train state, "anchor": adapters} of an RL checkpoint."""
    abstract = {"policy": layout.abstract_state(), "anchor": layout.abstract_trained()}
    with Checkpointer(str(workdir / "checkpoints"), create=False) as checkpointer:
        return jax.device_get(checkpointer.restore(abstract, step)[0])


def test_lora_rl_keeps_its_base_resumes_and_reads_back_merged(tmp_path, sft_dir):
    full = tmp_path / "full"
    summary = json.loads(run_cli(*_args(full, sft_dir), devices=2, check=True).stdout)
    assert summary["final_step"] == 4 and np.isfinite(summary["loss"])

    config = config_lib.load(str(ROOT / "configs" / "tiny.py"), {"model.lora_rank": 4, "model.lora_alpha": 8.0})
    layout = layout_from_config(config, 1)
    sft = jax.device_get(load_run(str(sft_dir), config=config, layout=layout.params_layout)[1])
    base = jax.device_get(read_base(full, layout.params_layout))
    jax.tree.map(np.testing.assert_array_equal, base, sft)  # the SFT weights, kept as they were

    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "4")  # killed after step 2's checkpoint
    resumed = json.loads(run_cli(*_args(cut, sft_dir), devices=2, check=True).stdout)
    assert resumed["start_step"] == 2
    assert rl_metric_stream(cut) == rl_metric_stream(full)
    jax.tree.map(np.testing.assert_array_equal, _checkpoint(cut, layout, 4), _checkpoint(full, layout, 4))

    policy = _checkpoint(full, layout, 4)["policy"].params
    pairs = jax.tree.leaves(policy, is_leaf=lambda x: isinstance(x, dict) and "b" in x)
    assert any(float(np.abs(x["b"]).max()) > 0 for x in pairs)  # trained off the base
    merged = lora.merge(layout.model_config, base, policy)
    _, read, _ = load_run(str(full), config=config)  # what eval and sample read
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), jax.device_get(read), merged)
