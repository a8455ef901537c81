"""LoRA adapters (t1jax.model.lora): which weights they target and how they shard, the merge
W + (alpha / rank) * a @ b against a numpy reference written with matrices, for every kind of
weight and for scanned layers' stacked weights, and a fresh adapter leaving the model as it was."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t1jax.errors import ConfigError
from t1jax.model import ModelConfig, forward, init_params, lora, stack_layers
from t1jax.model.params import get_path, paths_and_leaves

SMALL = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=48, qkv_bias=True)
KINDS = ("attention.q", "attention.k", "attention.v", "attention.o", "mlp.gate", "mlp.up", "mlp.down")


def _config(scan: bool, **changes) -> ModelConfig:
    return dataclasses.replace(SMALL, scan_layers="true" if scan else "false", lora_rank=4, lora_alpha=6.0, **changes)


def _random_adapters(config: ModelConfig, seed: int, std: float = 1.0) -> dict:
    """Adapters with every entry random (b too: a fresh one is zero)."""
    shapes = lora.abstract_adapters(config)
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [std * jax.random.normal(k, s.shape) for k, s in zip(keys, leaves)])


@pytest.mark.parametrize("scan", [False, True])
def test_the_default_targets_are_the_projections_with_their_axes(scan):
    config = _config(scan)
    found = {t.name: t for t in lora.targets(config)}
    layers = [""] if scan else ["0.", "1."]
    assert set(found) == {f"blocks.{i}{kind}" for i in layers for kind in KINDS}
    lead = (None,) if scan else ()
    axes = lora.adapter_logical_axes(config)["blocks"]
    block = axes if scan else axes[1]
    assert block["attention"]["q"] == {"a": (*lead, "embed", None), "b": (*lead, None, "heads", "head_dim")}
    assert block["attention"]["o"] == {"a": (*lead, "heads", "head_dim", None), "b": (*lead, None, "embed")}
    assert block["mlp"]["down"] == {"a": (*lead, "mlp", None), "b": (*lead, None, "embed")}
    shapes = lora.abstract_adapters(config)["blocks"]
    q = (shapes if scan else shapes[0])["attention"]["q"]
    assert (q["a"].shape, q["b"].shape) == ((*([2] if scan else []), 32, 4), (*([2] if scan else []), 4, 4, 8))
    # rank 4 on d=32, 4 heads x 8, 2 kv heads x 8, mlp 48, per layer
    per_layer = 4 * ((32 + 32) + 2 * (32 + 16) + (32 + 32) + 2 * (32 + 48) + (48 + 32))
    assert lora.num_adapter_params(config) == 2 * per_layer


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("norm", "not a projection"),
        ("q_bias", "not a projection"),
        ("nothing_here", "matches no weight"),
        ("(", "is not a regex"),
    ],
)
def test_targets_that_are_no_projection_are_one_line_errors(pattern, message):
    with pytest.raises(ConfigError, match=message):
        lora.targets(_config(False, lora_targets=pattern))


def _numpy_merge(w, a, b, scale, num_lead, num_in):
    """W + scale * A @ B with the input axes and the output axes each flattened into one."""
    lead = w.shape[:num_lead]
    ins, outs = w.shape[num_lead : num_lead + num_in], w.shape[num_lead + num_in :]
    rank = a.shape[-1]
    a2 = np.asarray(a, np.float64).reshape(*lead, int(np.prod(ins)), rank)
    b2 = np.asarray(b, np.float64).reshape(*lead, rank, int(np.prod(outs)))
    return np.asarray(w, np.float64) + scale * np.matmul(a2, b2).reshape(w.shape)


@pytest.mark.parametrize("scan", [False, True])
def test_merge_matches_numpy_for_every_kind_of_weight(scan):
    config = _config(scan, lora_targets=r"attention\.(q|k|v|o)$|mlp\.(gate|up|down)$|unembed", tie_embeddings=False)
    base = init_params(lora.base_model(config), seed=0)
    adapters = _random_adapters(config, 1)
    merged = jax.jit(lora.merge, static_argnums=0)(config, base, adapters)
    names = set()
    for t in lora.targets(config):
        names.add(t.path[-1])
        w, ab = get_path(base, t.path), get_path(adapters, t.path)
        expected = _numpy_merge(w, ab["a"], ab["b"], 6.0 / 4, t.num_lead, t.num_in)
        np.testing.assert_allclose(get_path(merged, t.path), expected, rtol=1e-5, atol=1e-5, err_msg=t.name)
    assert names == {"q", "k", "v", "o", "gate", "up", "down", "unembed"}
    # every other weight is the base's own, bit for bit
    targeted = {t.path for t in lora.targets(config)}
    for path, w in paths_and_leaves(base):
        if path not in targeted:
            np.testing.assert_array_equal(get_path(merged, path), w)


def test_stacked_adapters_merge_as_the_layers_do_one_by_one():
    """Adapters of the unrolled model stacked on the layer axis merge, and then compute, as the
    unrolled ones do layer by layer (what a scanned model's leading axis needs)."""
    unrolled, scanned = _config(False), _config(True)
    base = init_params(lora.base_model(unrolled), seed=0)
    adapters = _random_adapters(unrolled, 2, std=0.2)  # changes the weights by about as much as they are
    merged = lora.merge(unrolled, base, adapters)
    merged_stacked = lora.merge(scanned, stack_layers(base), stack_layers(adapters))
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6), stack_layers(merged), merged_stacked
    )
    tokens = jnp.arange(24).reshape(2, 12) % 64
    logits = forward(unrolled, merged, tokens)[0]
    np.testing.assert_allclose(forward(scanned, merged_stacked, tokens)[0], logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_fresh_adapters_leave_the_logits_exactly_as_they_were(scan, dtype):
    """b starts at 0: merged (also straight into the compute dtype, as training merges) the model
    computes what the base computes, bit for bit."""
    changes = {"compute_dtype": dtype} if dtype else {}
    config = _config(scan, **changes)
    base = init_params(lora.base_model(config), seed=0)
    adapters = lora.init_adapters(config, seed=3)
    pairs = jax.tree.leaves(adapters, is_leaf=lambda x: isinstance(x, dict) and "b" in x)
    assert all(float(jnp.abs(x["b"]).max()) == 0 and float(jnp.abs(x["a"]).max()) > 0 for x in pairs)
    merged = lora.merge(config, base, adapters, dtype and jnp.dtype(dtype))
    tokens = jnp.arange(24).reshape(2, 12) % 64
    np.testing.assert_array_equal(forward(config, merged, tokens)[0], forward(config, base, tokens)[0])


def test_base_model_is_the_model_without_lora():
    config = _config(True)
    assert lora.base_model(config) == dataclasses.replace(
        config, lora_rank=0, lora_alpha=ModelConfig().lora_alpha, lora_targets=ModelConfig().lora_targets
    )
    assert not lora.enabled(lora.base_model(config)) and lora.enabled(config)
