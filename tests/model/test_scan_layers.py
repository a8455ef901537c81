"""model.scan_layers and model.remat: a scanned model computes what the unrolled one computes
(logits, loss, gradients, cached decoding), every remat policy gives the unrematerialised
gradients, "full" remat holds less memory, and runs saved in either form load into the other."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t1jax import config as config_lib
from t1jax.config.model import REMAT_POLICIES
from t1jax.model import KVCache, ModelConfig, forward, init_params, logical_axes, stack_layers, unstack_layers
from t1jax.runtime.layout import params_layout
from t1jax.runtime.run_dir import load_params, save_run

# mixed layers: sliding windows with a global layer every 3rd, their own RoPE base, GQA, biases
UNROLLED = ModelConfig(
    vocab_size=97,
    d_model=32,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    mlp_dim=48,
    qkv_bias=True,
    post_norms=True,
    sliding_window=5,
    global_every=3,
    rope_local_base=100.0,
    tie_embeddings=False,
    scan_layers="false",
)
SCANNED = dataclasses.replace(UNROLLED, scan_layers="true")


def _packed_batch(seed=0, rows=2, length=16):
    """Rows packing 2-3 sequences (positions restart per segment) and trailing padding (id 0)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, UNROLLED.vocab_size, (rows, length))
    segments = np.zeros((rows, length), np.int32)
    positions = np.zeros((rows, length), np.int32)
    for r, cuts in enumerate(([0, 6, 13], [0, 4, 9, 14])):
        for s, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            segments[r, a:b], positions[r, a:b] = s + 1, np.arange(b - a)
    return jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(segments)


def _loss(config, params, batch):
    tokens, positions, segments = batch
    logits, _ = forward(config, params, tokens, positions, segment_ids_BT=segments)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    same = (segments[:, 1:] == segments[:, :-1]) & (segments[:, 1:] > 0)
    return -(picked * same).sum() / same.sum()


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), a, b)))


def test_a_seed_gives_the_same_weights_in_both_forms_and_the_forms_convert():
    unrolled, scanned = init_params(UNROLLED, 1), init_params(SCANNED, 1)
    assert scanned["blocks"]["attention"]["q"].shape == (4, 32, 4, 8)
    assert logical_axes(SCANNED)["blocks"]["attention"]["q"] == (None, "embed", "heads", "head_dim")
    assert _max_diff(stack_layers(unrolled), scanned) == 0.0
    assert _max_diff(unstack_layers(scanned), unrolled) == 0.0


def test_scanned_layers_give_the_unrolled_loss_and_gradients():
    batch = _packed_batch()
    unrolled = init_params(UNROLLED, 2)
    loss_u, grads_u = jax.jit(jax.value_and_grad(lambda p: _loss(UNROLLED, p, batch)))(unrolled)
    loss_s, grads_s = jax.jit(jax.value_and_grad(lambda p: _loss(SCANNED, p, batch)))(stack_layers(unrolled))
    assert abs(float(loss_u) - float(loss_s)) <= 1e-6 * abs(float(loss_u))
    assert _max_diff(stack_layers(grads_u), grads_s) <= 1e-6
    # a layer is really windowed: without windows the loss changes
    plain = dataclasses.replace(UNROLLED, sliding_window=0)
    assert abs(float(_loss(plain, unrolled, batch)) - float(loss_u)) > 1e-4


# "full" in the default run; the other policies with the long tests (`pytest -m long`)
POLICIES = [p if p == "full" else pytest.param(p, marks=pytest.mark.long) for p in REMAT_POLICIES if p != "none"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("base", [UNROLLED, SCANNED], ids=["unrolled", "scanned"])
def test_every_remat_policy_gives_the_same_gradients(policy, base):
    batch, params = _packed_batch(1), init_params(base, 3)
    expected = jax.jit(jax.grad(lambda p: _loss(base, p, batch)))(params)
    config = dataclasses.replace(base, remat=policy)
    got = jax.jit(jax.grad(lambda p: _loss(config, p, batch)))(params)
    assert _max_diff(expected, got) <= 1e-6


def test_full_remat_holds_less_than_none():
    """XLA's own memory analysis of the compiled gradient: with every layer rematerialised, only
    the layers' inputs are kept for the backward pass."""
    config = dataclasses.replace(SCANNED, d_model=64, mlp_dim=256, num_layers=8)
    params = jax.eval_shape(lambda: init_params(config))
    tokens = jax.ShapeDtypeStruct((8, 256), jnp.int32)

    def temp_bytes(remat):
        c = dataclasses.replace(config, remat=remat)
        grad = jax.jit(jax.grad(lambda p, t: forward(c, p, t)[0].mean()))
        return grad.lower(params, tokens).compile().memory_analysis().temp_size_in_bytes

    none, full = temp_bytes("none"), temp_bytes("full")
    assert full < 0.7 * none, (full, none)


def test_a_scanned_model_decodes_as_the_unrolled_one():
    """Prefill of a prompt into a cache, then one token at a time: the same logits."""
    params = init_params(UNROLLED, 4)
    tokens = jnp.asarray(np.random.default_rng(5).integers(0, 97, (2, 9)))

    def decode(config, params):
        cache = KVCache.empty(config, 2, 12)
        logits, cache = forward(config, params, tokens[:, :6], cache=cache)
        steps = [logits]
        for t in range(6, 9):
            logits, cache = forward(config, params, tokens[:, t : t + 1], cache=cache)
            steps.append(logits)
        return jnp.concatenate(steps, axis=1)

    unrolled = jax.jit(lambda p: decode(UNROLLED, p))(params)
    scanned = jax.jit(lambda p: decode(SCANNED, p))(stack_layers(params))
    assert float(jnp.abs(unrolled - scanned).max()) <= 1e-5
    whole, _ = forward(UNROLLED, params, tokens)  # and both equal the pass without a cache
    assert float(jnp.abs(whole - unrolled).max()) <= 1e-4


@pytest.mark.parametrize("saved, read", [(UNROLLED, SCANNED), (SCANNED, UNROLLED)], ids=["to_scanned", "to_unrolled"])
def test_a_run_saved_in_one_form_loads_into_the_other(tmp_path, saved, read):
    config = config_lib.load(None, {f"model.{k}": v for k, v in dataclasses.asdict(saved).items()})
    params = init_params(saved, 6)
    save_run(tmp_path / "run", config, params)
    layout = params_layout(read)
    loaded = load_params(tmp_path / "run", layout)
    expected = stack_layers(params) if read.scans_layers else unstack_layers(params)
    assert _max_diff(jax.device_get(loaded), expected) == 0.0
    assert jax.tree.leaves(loaded)[0].sharding == jax.tree.leaves(layout.param_shardings)[0]


@pytest.mark.parametrize("attention", ["dot_product_attention", "splash"])
@pytest.mark.parametrize(
    "base", [pytest.param(UNROLLED, marks=pytest.mark.long), SCANNED], ids=["unrolled", "scanned"]
)  # scanned layers switch between window sizes: the harder case stays in the default run
def test_the_attention_kernels_give_the_xla_loss_and_gradients(attention, base):
    """Through the whole model: packed rows, sliding layers between global ones (scanned: a
    traced window per layer); splash runs Pallas's interpreter off TPU."""
    batch, params = _packed_batch(2), init_params(base, 7)
    loss_x, grads_x = jax.jit(jax.value_and_grad(lambda p: _loss(base, p, batch)))(params)
    config = dataclasses.replace(base, attention=attention)
    loss_k, grads_k = jax.jit(jax.value_and_grad(lambda p: _loss(config, p, batch)))(params)
    assert abs(float(loss_x) - float(loss_k)) <= 1e-5 * abs(float(loss_x))
    assert _max_diff(grads_x, grads_k) <= 1e-5
