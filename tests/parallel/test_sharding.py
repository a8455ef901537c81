"""The same model and SFT steps on 1 device and on meshes of 8 simulated CPU devices."""

import jax
import numpy as np
import pytest
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.errors import ConfigError
from t1jax.model import ModelConfig, forward
from t1jax.train.optimizer import learning_rate_schedule, make_optimizer
from t1jax.train.sft_step import make_sft_step
from t1jax.train.state import make_layout

# Float32 on CPU: sharded reductions sum in a different order, so results agree to rounding.
TOLERANCE = dict(rtol=2e-5, atol=2e-5)
OVERRIDES = {**SMALL_MODEL, "optim.warmup_steps": 1}


def _run(mesh_shape, num_devices, grad_accum=2, steps=3):
    data, fsdp, tensor = mesh_shape
    config = config_lib.load(None, {**OVERRIDES, **mesh_overrides(data, fsdp, tensor)})
    model_config = ModelConfig.from_config(config.model)
    mesh = parallel.make_mesh(config.mesh, jax.devices()[:num_devices])
    rules = parallel.rules_table(config.mesh.rules)
    tx = make_optimizer(config.optim, 10)
    layout = make_layout(model_config, tx, mesh, rules)
    state = layout.init(0)
    batch_sh = parallel.batch_sharding(mesh, rules)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, (8, 17)).astype(np.int32)
    logits, _ = jax.jit(forward, static_argnums=0)(
        model_config, state.params, parallel.to_global({"t": tokens}, batch_sh)["t"]
    )
    step = make_sft_step(layout, learning_rate_schedule(config.optim, 10), grad_accum)
    losses = []
    for i in range(steps):
        batch = {
            "tokens": rng.integers(0, 64, (8, 17)).astype(np.int32),
            "loss_mask": rng.integers(0, 2, (8, 17)).astype(np.int32),
        }
        if i == steps - 1:  # the last step packs two examples into each row (sft.pack)
            split = rng.integers(3, 15, (8, 1))
            column = np.arange(17)[None, :]
            batch["segment_ids"] = np.where(column < split, 1, 2).astype(np.int32)
            batch["positions"] = np.where(column < split, column, column - split).astype(np.int32)
        state, metrics = step(state, parallel.to_global(batch, batch_sh))
        losses.append(float(metrics["loss"]))
    return np.asarray(logits), losses, jax.tree.map(np.asarray, state.params), state


@pytest.fixture(scope="module")
def single_device():
    return _run((1, 1, 1), 1)


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2), (1, 8, 1)])
def test_sharded_forward_and_steps_match_one_device(single_device, mesh_shape):
    logits, losses, params, state = _run(mesh_shape, 8)
    ref_logits, ref_losses, ref_params, _ = single_device
    np.testing.assert_allclose(logits, ref_logits, **TOLERANCE)
    np.testing.assert_allclose(losses, ref_losses, **TOLERANCE)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOLERANCE), params, ref_params)
    # The state really is spread: the embedding is split over fsdp, and so are its Adam moments.
    fsdp = mesh_shape[1]
    assert state.params["embed"].addressable_shards[0].data.shape == (64 // mesh_shape[2], 32 // fsdp)
    adam_mu = [x for x in jax.tree.leaves(state.opt_state) if x.shape == (64, 32)][0]
    assert adam_mu.sharding == state.params["embed"].sharding


def test_gradient_accumulation_equals_full_batch(single_device):
    _, losses, params, _ = _run((1, 1, 1), 1, grad_accum=1)
    _, ref_losses, ref_params, _ = single_device  # grad_accum=2
    np.testing.assert_allclose(losses, ref_losses, **TOLERANCE)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOLERANCE), params, ref_params)


def test_indivisible_dimension_is_a_clear_error():
    with pytest.raises(ConfigError, match="logical axis 'kv_heads' has size 2, which mesh axes \\('tensor',\\)"):
        _run((1, 2, 4), 8)
