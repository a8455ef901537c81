"""A run's weights load into a model of another param_dtype (import in bfloat16, train in float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from small_model import SMALL_MODEL

from t1jax import config as config_lib
from t1jax.errors import CheckpointError, ConfigError
from t1jax.model import ModelConfig, init_params
from t1jax.runtime.layout import params_layout
from t1jax.runtime.run_dir import load_params, load_run, save_run, save_run_config


@pytest.mark.parametrize("saved,loaded", [("bfloat16", "float32"), ("float32", "bfloat16")])
def test_a_run_loads_into_another_param_dtype(tmp_path, saved, loaded):
    config = config_lib.load(None, {**SMALL_MODEL, "model.param_dtype": saved, "model.compute_dtype": saved})
    params = init_params(ModelConfig.from_config(config.model), seed=0)
    save_run(tmp_path, config, params)
    here = ModelConfig.from_config(config_lib.load(None, {**SMALL_MODEL, "model.param_dtype": loaded}).model)
    layout = params_layout(here)
    got = load_params(tmp_path, layout)  # what sft.init_from and (through load_run) rl.init_from read
    for x, want in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
        assert x.dtype == jnp.dtype(loaded)  # bf16 -> f32 is exact; f32 -> bf16 rounds to nearest
        np.testing.assert_array_equal(np.asarray(x), np.asarray(want.astype(loaded)))


def test_another_shape_is_still_refused(tmp_path):
    config = config_lib.load(None, {**SMALL_MODEL, "model.param_dtype": "bfloat16"})
    save_run(tmp_path, config, init_params(ModelConfig.from_config(config.model), seed=0))
    other = ModelConfig.from_config(config_lib.load(None, {**SMALL_MODEL, "model.d_model": 64}).model)
    with pytest.raises(CheckpointError, match="model.d_model is 32 there, 64 here"):
        load_run(tmp_path, config=config, layout=params_layout(other))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model.param_dtype": "float32"}, "model.param_dtype is 'bfloat16' there, 'float32' here"),
        ({"model.scan_layers": "true"}, "model.scan_layers is 'false' there, 'true' here"),
        ({"model.d_model": 64}, "model.d_model is 32 there, 64 here"),
    ],
)
def test_resuming_another_model_or_form_is_refused_before_the_config_is_replaced(tmp_path, change, message):
    config = config_lib.load(None, {**SMALL_MODEL, "model.param_dtype": "bfloat16", "run.workdir": str(tmp_path)})
    save_run(tmp_path, config, init_params(ModelConfig.from_config(config.model), seed=0))
    before = (tmp_path / "config.json").read_text()
    changed = config_lib.load(None, {**SMALL_MODEL, "model.param_dtype": "bfloat16", **change})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        save_run_config(tmp_path, changed)
    assert (tmp_path / "config.json").read_text() == before
    save_run_config(tmp_path, config)  # the same model and form resume
    # a directory without checkpoints takes any config
    save_run_config(tmp_path / "fresh", changed)
