"""The transformer against closed forms and an independent numpy implementation."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t1jax.model import (
    KVCache,
    ModelConfig,
    abstract_params,
    hidden_and_unembedding,
    init_params,
    logical_axes,
    logits_from_hidden,
)
from t1jax.model import forward as eager_forward

forward = jax.jit(eager_forward, static_argnums=0)


@functools.cache
def params_of(config):
    """Initialising compiles slowly on CPU (one threefry draw per param): once per config."""
    return jax.jit(init_params, static_argnums=(0, 1))(config, 0)


SMALL = ModelConfig(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=48)
VARIANTS = {
    "llama": SMALL,
    "qwen2.5": dataclasses.replace(SMALL, qkv_bias=True, tie_embeddings=False, rope_base=1e6),
    "gemma3": dataclasses.replace(
        SMALL,
        qk_norm=True,
        post_norms=True,
        scale_embeddings=True,
        mlp_activation="gelu",
        sliding_window=3,
        global_every=2,
        head_dim=16,
    ),
    "mha": dataclasses.replace(SMALL, num_kv_heads=4, num_layers=1),
}


def _tokens(batch, length, vocab, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, (batch, length)), jnp.int32)


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count_matches_closed_form(name):
    config = VARIANTS[name]
    leaves = jax.tree.leaves(abstract_params(config))
    assert sum(int(np.prod(x.shape)) for x in leaves) == config.num_params()


def test_closed_form_by_hand():
    # Llama-style SMALL: embed 61*32 (tied); per layer q 32*4*8, k,v 2*32*2*8, o 4*8*32,
    # mlp 3*32*48, two norms 2*32; final norm 32.
    per_layer = 1024 + 1024 + 1024 + 4608 + 64
    assert SMALL.num_params() == 61 * 32 + 2 * per_layer + 32


def test_every_param_has_logical_axes_of_its_rank():
    config = VARIANTS["gemma3"]
    shapes, axes = abstract_params(config), logical_axes(config)
    pairs = jax.tree.map(lambda s, a: (len(s.shape), len(a)), shapes, axes, is_leaf=lambda x: isinstance(x, tuple))
    for rank, named in jax.tree.leaves(pairs, is_leaf=lambda x: isinstance(x, tuple)):
        assert rank == named


@pytest.mark.parametrize("name", VARIANTS)
def test_future_tokens_never_change_earlier_logits(name):
    config = VARIANTS[name]
    params = params_of(config)
    tokens = _tokens(2, 12, config.vocab_size)
    changed = tokens.at[:, 7:].set((tokens[:, 7:] + 5) % config.vocab_size)
    logits, _ = forward(config, params, tokens)
    logits_changed, _ = forward(config, params, changed)
    np.testing.assert_array_equal(logits[:, :7], logits_changed[:, :7])
    assert not np.allclose(logits[:, 7:], logits_changed[:, 7:])


def test_sliding_window_hides_tokens_outside_the_window():
    config = dataclasses.replace(SMALL, num_layers=1, sliding_window=3)  # one local layer
    params = params_of(config)
    tokens = _tokens(1, 10, config.vocab_size)
    changed = tokens.at[:, 2].set((tokens[:, 2] + 1) % config.vocab_size)
    logits, _ = forward(config, params, tokens)
    logits_changed, _ = forward(config, params, changed)
    # position 2 is seen by positions 2, 3, 4 only (window 3), and its own output changes
    np.testing.assert_array_equal(logits[:, 5:], logits_changed[:, 5:])
    assert not np.allclose(logits[:, 2:5], logits_changed[:, 2:5])


@pytest.mark.parametrize("name", VARIANTS)
def test_cached_prefill_and_decode_equal_full_forward(name):
    config = VARIANTS[name]
    params = params_of(config)
    tokens = _tokens(3, 11, config.vocab_size, seed=3)
    full, _ = forward(config, params, tokens)
    cache = KVCache.empty(config, batch=3, slots=16)
    prefill, cache = forward(config, params, tokens[:, :6], cache=cache)
    np.testing.assert_allclose(prefill, full[:, :6], atol=2e-5, rtol=2e-5)
    for t in range(6, 11):
        step, cache = forward(config, params, tokens[:, t : t + 1], cache=cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=2e-5, rtol=2e-5)
    assert int(cache.index) == 11


def test_left_padded_prompt_matches_unpadded():
    config = SMALL
    params = params_of(config)
    tokens = _tokens(1, 5, config.vocab_size, seed=5)
    alone, _ = forward(config, params, tokens)
    padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), tokens], axis=1)
    positions = jnp.asarray([[0, 0, 0, 0, 1, 2, 3, 4]])
    mask = jnp.asarray([[False] * 3 + [True] * 5])
    logits, _ = forward(config, params, padded, positions, mask)
    np.testing.assert_allclose(logits[:, 3:], alone, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_packed_row_gives_each_sequence_its_own_logits(name):
    """Three sequences in one row (and padding) see only themselves: their logits equal
    those of each run alone, sliding window included."""
    config = VARIANTS[name]
    params = params_of(config)
    lengths = (4, 6, 3)
    alone = [_tokens(1, n, config.vocab_size, seed=10 + i) for i, n in enumerate(lengths)]
    row = jnp.concatenate([*alone, jnp.zeros((1, 2), jnp.int32)], axis=1)
    segments = jnp.asarray([sum(([i + 1] * n for i, n in enumerate(lengths)), []) + [0, 0]])
    positions = jnp.asarray([sum((list(range(n)) for n in lengths), []) + [0, 0]])
    logits, _ = forward(config, params, row, positions, segments > 0, segment_ids_BT=segments)
    start = 0
    for tokens, n in zip(alone, lengths):
        expected, _ = forward(config, params, tokens)
        np.testing.assert_allclose(logits[:, start : start + n], expected, atol=2e-5, rtol=2e-5)
        start += n
    with pytest.raises(ValueError, match="without a cache"):
        cache = KVCache.empty(config, 1, 8)
        forward(config, params, row[:, :4], segment_ids_BT=segments[:, :4], cache=cache)


@pytest.mark.parametrize("name", ["qwen2.5", "gemma3"])
def test_hidden_states_and_unembedding_give_the_forward_logits(name):
    """The pieces that chunked log-probs are built from: the final normed hidden states and the
    output matrix (the tied embedding, or Qwen's separate head) give exactly forward's logits,
    packed rows included."""
    config = VARIANTS[name]
    params = params_of(config)
    tokens = _tokens(2, 7, config.vocab_size, seed=3)
    segments = jnp.asarray([[1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1]])
    positions = jnp.asarray([[0, 1, 2, 0, 1, 2, 0], list(range(7))])
    logits, _ = forward(config, params, tokens, positions, segment_ids_BT=segments)
    hidden, unembedding = jax.jit(hidden_and_unembedding, static_argnums=0)(
        config, params, tokens, positions, segment_ids_BT=segments
    )
    assert hidden.shape == (2, 7, config.d_model) and unembedding.shape == (config.d_model, config.vocab_size)
    expected_matrix = params["embed"].T if config.tie_embeddings else params["unembed"]
    np.testing.assert_array_equal(unembedding, expected_matrix)
    np.testing.assert_allclose(logits_from_hidden(hidden, unembedding), logits, rtol=1e-6, atol=1e-6)


# --- an independent numpy implementation (explicit loops over heads, no einsum sharing) ---


def _rms(x, scale, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _rope(x, pos, base):  # x [T, H]
    half = x.shape[-1] // 2
    freq = base ** (-np.arange(half) / half)
    angle = pos[:, None] * freq[None, :]
    x1, x2 = x[:, :half], x[:, half:]
    return np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle), x2 * np.cos(angle) + x1 * np.sin(angle)], -1)


def _numpy_forward(config, params, tokens):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    T = len(tokens)
    x = p["embed"][tokens]
    pos = np.arange(T, dtype=np.float64)
    group = config.num_heads // config.num_kv_heads
    for i in range(config.num_layers):
        blk = p["blocks"][i]
        h = _rms(x, blk["attention_norm"]["scale"], config.norm_eps)
        att = blk["attention"]
        out = np.zeros((T, config.d_model))
        for head in range(config.num_heads):
            kv = head // group
            q = _rope(h @ att["q"][:, head], pos, config.rope_base)
            k = _rope(h @ att["k"][:, kv], pos, config.rope_base)
            v = h @ att["v"][:, kv]
            scores = q @ k.T / np.sqrt(q.shape[-1])
            scores = np.where(np.tril(np.ones((T, T))) > 0, scores, -np.inf)
            w = np.exp(scores - scores.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            out += (w @ v) @ att["o"][head]
        x = x + out
        h = _rms(x, blk["mlp_norm"]["scale"], config.norm_eps)
        gate = h @ blk["mlp"]["gate"]
        x = x + (gate / (1 + np.exp(-gate)) * (h @ blk["mlp"]["up"])) @ blk["mlp"]["down"]
    x = _rms(x, p["final_norm"]["scale"], config.norm_eps)
    return x @ p["embed"].T


def test_forward_matches_numpy_reference():
    config = SMALL
    params = params_of(config)
    tokens = np.asarray(_tokens(1, 9, config.vocab_size, seed=8))[0]
    logits, _ = forward(config, params, jnp.asarray(tokens)[None])
    np.testing.assert_allclose(np.asarray(logits[0]), _numpy_forward(config, params, tokens), atol=1e-4, rtol=1e-4)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    config = dataclasses.replace(SMALL, compute_dtype="bfloat16")
    params = params_of(config)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    logits, _ = forward(config, params, _tokens(1, 6, config.vocab_size))
    reference, _ = forward(SMALL, params, _tokens(1, 6, config.vocab_size))
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, reference, atol=0.15)
