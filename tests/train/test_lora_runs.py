"""A LoRA run directory: the base kept once beside the adapters' checkpoints, a run cut short
resuming from its saved adapters to the uninterrupted run's bits, and every reader (load_run:
eval, sample, rl.init_from; export) getting the base with the adapters merged in."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from t1jax import config as config_lib
from t1jax.errors import ConfigError
from t1jax.model import forward, lora
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.lora_run import BASE_DIR, read_base
from t1jax.runtime.run_dir import load_params, load_run
from t1jax.train.sft import run_sft
from t1jax.train.state import layout_from_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
LORA_SFT = {
    "model.lora_rank": 4,
    "model.lora_alpha": 8.0,
    "optim.learning_rate": 1e-2,
    "sft.num_steps": 4,
    "sft.eval_every": 2,
    "checkpoint.save_every": 2,
    "checkpoint.async_save": False,
}


def _config(workdir, **overrides):
    return config_lib.load(str(ROOT / "configs" / "tiny.py"), {**LORA_SFT, "run.workdir": str(workdir), **overrides})


def _adapters(workdir, config, step=None):
    layout = layout_from_config(config, 1)
    with Checkpointer(str(workdir / "checkpoints"), create=False) as checkpointer:
        return jax.device_get(checkpointer.restore_params(layout.abstract_trained(), step)), layout


@pytest.fixture(scope="module")
def lora_sft(tmp_path_factory):
    """A LoRA SFT run of 4 steps (checkpoints 2 and 4) from fresh base weights."""
    workdir = tmp_path_factory.mktemp("lora") / "sft"
    summary = run_sft(_config(workdir))
    assert summary["final_step"] == 4
    return workdir


def test_the_run_keeps_its_base_once_and_adapters_in_its_checkpoints(lora_sft):
    config = _config(lora_sft)
    adapters, layout = _adapters(lora_sft, config)
    assert jax.tree.structure(adapters) == jax.tree.structure(lora.abstract_adapters(layout.model_config))
    assert sorted(p.name for p in (lora_sft / BASE_DIR).iterdir() if p.name.isdigit()) == ["0"]
    base = jax.device_get(read_base(lora_sft, layout.params_layout))
    jax.tree.map(np.testing.assert_array_equal, base, jax.device_get(layout.init_params(config.run.seed)))


def test_a_cut_run_resumes_from_its_saved_adapters(lora_sft, tmp_path):
    """The run with its last checkpoint gone (killed after step 2) redoes steps 3 and 4 from the
    adapters, optimizer state and data position of step 2, to the same bits."""
    cut = tmp_path / "cut"
    shutil.copytree(lora_sft, cut)
    shutil.rmtree(cut / "checkpoints" / "4")
    summary = run_sft(_config(cut))
    assert summary["start_step"] == 2 and summary["final_step"] == 4
    resumed, _ = _adapters(cut, _config(cut), 4)
    uninterrupted, _ = _adapters(lora_sft, _config(lora_sft), 4)
    jax.tree.map(np.testing.assert_array_equal, resumed, uninterrupted)


@pytest.mark.parametrize("change", [{"model.lora_rank": 8}, {"model.lora_rank": 0}])
def test_resuming_with_other_adapters_is_refused_in_one_line(lora_sft, change):
    """Checkpoints of rank-4 adapters do not resume as rank 8 or as full fine-tuning."""
    with pytest.raises(ConfigError, match="model.lora_rank is 4 there"):
        run_sft(_config(lora_sft, **change))


def test_merged_params_are_the_base_plus_the_steps_adapters(lora_sft):
    config = _config(lora_sft)
    adapters, layout = _adapters(lora_sft, config, 2)
    base = jax.device_get(read_base(lora_sft, layout.params_layout))
    merged = load_params(lora_sft, layout.params_layout, step=2)
    expected = lora.merge(layout.model_config, base, adapters)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), jax.device_get(merged), expected)
    # b moved off zero: the merged model is not the base
    tokens = np.arange(32).reshape(2, 16) % 300
    cfg = lora.base_model(layout.model_config)
    assert np.abs(forward(cfg, merged, tokens)[0] - forward(cfg, base, tokens)[0]).max() > 1e-3


def test_load_run_reads_a_lora_run_as_its_merged_model(lora_sft):
    """What eval, sample and rl.init_from read: the run's model with the adapters merged in, on
    another mesh and in the scanned form too."""
    config = _config(lora_sft)
    adapters, layout = _adapters(lora_sft, config)
    base = jax.device_get(read_base(lora_sft, layout.params_layout))
    expected = jax.device_get(lora.merge(layout.model_config, base, adapters))
    model_config, params, _ = load_run(lora_sft)
    assert model_config.lora_rank == 4
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), jax.device_get(params), expected)
    other = _config(lora_sft, **{"mesh.data": 2, "mesh.fsdp": 4, "model.scan_layers": "true"})
    layout = layout_from_config(other, 1)
    _, stacked, _ = load_run(lora_sft, config=other, layout=layout.params_layout)
    assert stacked["blocks"]["attention"]["q"].shape[0] == 2
    tokens = np.arange(32).reshape(2, 16) % 300
    np.testing.assert_allclose(
        forward(layout.params_layout.model_config, stacked, tokens)[0],
        forward(lora.base_model(model_config), expected, tokens)[0],
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.long
def test_lora_sft_can_start_from_a_lora_run(lora_sft, tmp_path):
    """sft.init_from a LoRA run: the new run's base is that run's merged model."""
    workdir = tmp_path / "next"
    run_sft(_config(workdir, **{"sft.init_from": str(lora_sft), "sft.num_steps": 1}))
    layout = layout_from_config(_config(workdir), 1)
    base = jax.device_get(read_base(workdir, layout.params_layout))
    merged = jax.device_get(load_params(lora_sft, layout.params_layout))
    jax.tree.map(np.testing.assert_array_equal, base, merged)
    assert json.loads((workdir / "config.json").read_text())["model"]["lora_rank"] == 4
