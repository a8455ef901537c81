"""What Qwen2, Llama 3 and Gemma 3 checkpoints need of the model (llama3 RoPE scaling, a RoPE
base for sliding layers, the query scale, (1 + w) norms, the embedding scale), against numpy
references written here from the families' rules and, where transformers is installed, against
transformers' own models with every weight random (its zero biases and zero Gemma norms would
hide offset bugs)."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t1jax import config as config_lib
from t1jax.errors import ConfigError
from t1jax.model import KVCache, ModelConfig, abstract_params, init_params
from t1jax.model import forward as eager_forward
from t1jax.model.layers import RMSNorm, rope_inv_freq

forward = jax.jit(eager_forward, static_argnums=0)

GEMMA3 = ModelConfig(
    vocab_size=97,
    d_model=40,  # head_dim 16 != 40 / 4
    num_layers=6,
    num_heads=4,
    num_kv_heads=1,
    head_dim=16,
    query_scale=24**-0.5,  # query_pre_attn_scalar 24, not head_dim
    mlp_dim=56,
    mlp_activation="gelu",
    rope_base=1e6,
    rope_local_base=1e4,
    qk_norm=True,
    post_norms=True,
    scale_embeddings=True,
    sliding_window=4,
    global_every=3,
    norm_plus_one=True,
)
LLAMA3 = ModelConfig(
    vocab_size=89,
    d_model=48,  # head_dim 16 != 48 / 6
    num_layers=3,
    num_heads=6,
    num_kv_heads=2,
    head_dim=16,
    mlp_dim=72,
    rope_base=5e5,
    # wavelengths 6.3, 32, 167, ...: one of each kind (kept, interpolated, divided) at this size
    rope_scaling="llama3",
    rope_scaling_factor=32.0,
    rope_low_freq_factor=1.0,
    rope_high_freq_factor=4.0,
    rope_original_max_len=64,
    tie_embeddings=False,
    norm_eps=1e-5,
)
QWEN2 = ModelConfig(
    vocab_size=83,
    d_model=48,
    num_layers=2,
    num_heads=6,
    num_kv_heads=2,
    head_dim=16,
    mlp_dim=64,
    rope_base=1e6,
    qkv_bias=True,
    tie_embeddings=False,
)
FAMILIES = {
    "gemma3": GEMMA3,
    "gemma3-untied": dataclasses.replace(GEMMA3, tie_embeddings=False),
    # Gemma-3 4B+: linear RoPE scaling of the global layers only
    "gemma3-linear": dataclasses.replace(GEMMA3, rope_scaling="linear", rope_scaling_factor=8.0),
    "llama3": LLAMA3,
    "llama3-tied": dataclasses.replace(LLAMA3, tie_embeddings=True),
    "qwen2": QWEN2,
    "default": ModelConfig(),
}


# --- numpy references, written from the families' rules (JAX_NOTES.md "Real checkpoints") ---


def _numpy_inv_freq(head_dim, base, llama3=None, linear=None):
    """transformers' default, linear and _compute_llama3_parameters, one frequency at a time."""
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if linear is not None:
        return inv_freq / linear
    if llama3 is None:
        return inv_freq
    factor, low, high, original = llama3
    out = []
    for f in inv_freq:
        wavelen = 2 * math.pi / f
        if wavelen < original / high:
            out.append(f)
        elif wavelen > original / low:
            out.append(f / factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.asarray(out)


def _llama3_of(config):
    if config.rope_scaling != "llama3":
        return None
    c = config
    return (c.rope_scaling_factor, c.rope_low_freq_factor, c.rope_high_freq_factor, c.rope_original_max_len)


def _norm(x, w, config):
    scale = 1 + w if config.norm_plus_one else w
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + config.norm_eps) * scale


def _rope(x, inv_freq):  # x [T, H], rotate-half
    angle = np.arange(len(x))[:, None] * inv_freq[None, :]
    x1, x2 = np.split(x, 2, axis=-1)
    return np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle), x2 * np.cos(angle) + x1 * np.sin(angle)], -1)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _numpy_forward(config, params, tokens):
    """Logits [T, V] of one sequence in float64, loops over heads."""
    c, p = config, jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    T, H = len(tokens), c.head_dim or c.d_model // c.num_heads
    x = p["embed"][tokens] * (np.float32(c.d_model**0.5) if c.scale_embeddings else 1.0)
    for i in range(c.num_layers):
        blk, att = p["blocks"][i], p["blocks"][i]["attention"]
        sliding = c.sliding_window > 0 and not (c.global_every and (i + 1) % c.global_every == 0)
        if sliding and c.rope_local_base:  # a local RoPE base, never scaled
            inv_freq = _numpy_inv_freq(H, c.rope_local_base)
        else:
            linear = c.rope_scaling_factor if c.rope_scaling == "linear" else None
            inv_freq = _numpy_inv_freq(H, c.rope_base, _llama3_of(c), linear)
        allowed = np.tril(np.ones((T, T), bool))
        if sliding:
            allowed &= np.subtract.outer(np.arange(T), np.arange(T)) < c.sliding_window
        h = _norm(x, blk["attention_norm"]["scale"], c)
        out = np.zeros((T, c.d_model))
        for head in range(c.num_heads):
            kv = head // (c.num_heads // c.num_kv_heads)
            q, k, v = h @ att["q"][:, head], h @ att["k"][:, kv], h @ att["v"][:, kv]
            if c.qkv_bias:
                q, k, v = q + att["q_bias"][head], k + att["k_bias"][kv], v + att["v_bias"][kv]
            if c.qk_norm:
                q, k = _norm(q, att["q_norm"]["scale"], c), _norm(k, att["k_norm"]["scale"], c)
            scores = _rope(q, inv_freq) @ _rope(k, inv_freq).T * (c.query_scale or H**-0.5)
            scores = np.where(allowed, scores, -np.inf)
            w = np.exp(scores - scores.max(-1, keepdims=True))
            out += (w / w.sum(-1, keepdims=True) @ v) @ att["o"][head]
        if c.post_norms:
            out = _norm(out, blk["post_attention_norm"]["scale"], c)
        x = x + out
        h = _norm(x, blk["mlp_norm"]["scale"], c)
        act = _gelu_tanh if c.mlp_activation == "gelu" else lambda g: g / (1 + np.exp(-g))
        out = (act(h @ blk["mlp"]["gate"]) * (h @ blk["mlp"]["up"])) @ blk["mlp"]["down"]
        if c.post_norms:
            out = _norm(out, blk["post_mlp_norm"]["scale"], c)
        x = x + out
    x = _norm(x, p["final_norm"]["scale"], c)
    return x @ (p["embed"].T if c.tie_embeddings else p["unembed"])


@functools.cache
def random_params(config, seed=0):
    """Every parameter random: norm scales around their identity (1, or 0 with norm_plus_one),
    biases nonzero, matrices N(0, 1/fan_in), the embedding N(0, 1/d_model)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        shape = leaf.shape
        if "scale" in name:
            value = (0 if config.norm_plus_one else 1) + 0.3 * rng.standard_normal(shape)
        elif "bias" in name:
            value = 0.3 * rng.standard_normal(shape)
        elif name.endswith("['embed']"):  # 1/d: tied logits of order 1, as float32 tolerances expect
            value = rng.standard_normal(shape) / math.sqrt(shape[1])
        else:  # projections list their input axes first; o [N, H, D] has N * H inputs
            fan_in = math.prod(shape[:-1]) if name.endswith("['o']") else shape[0]
            value = rng.standard_normal(shape) / math.sqrt(fan_in)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract_params(config))


def _tokens(batch, length, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (batch, length)).astype(np.int32)


# --- llama3 inverse frequencies ---


@pytest.mark.parametrize("head_dim", [64, 128])
def test_llama3_inverse_frequencies_match_the_formula(head_dim):
    llama3 = (32.0, 1.0, 4.0, 8192)
    expected = _numpy_inv_freq(head_dim, 5e5, llama3)
    computed = rope_inv_freq(head_dim, 5e5, "llama3", llama3[0], llama3[1:])
    np.testing.assert_allclose(np.asarray(computed), expected, rtol=2e-6)
    plain = _numpy_inv_freq(head_dim, 5e5)
    np.testing.assert_allclose(np.asarray(rope_inv_freq(head_dim, 5e5)), plain, rtol=2e-6)
    # all three regions occur: kept (short wavelengths), divided by the factor, interpolated
    ratio = plain / expected
    assert np.sum(ratio == 1) > 0 and np.sum(np.isclose(ratio, 32)) > 0
    assert np.sum((ratio > 1) & (ratio < 32) & ~np.isclose(ratio, 32)) > 0


# --- full forwards against the numpy reference ---


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_matches_numpy_reference(name):
    config = FAMILIES[name]
    params = random_params(config)
    tokens = _tokens(2, 24, config.vocab_size, seed=1)
    logits = np.asarray(forward(config, params, jnp.asarray(tokens))[0])
    for row in range(2):
        expected = _numpy_forward(config, params, tokens[row])
        diff = np.abs(logits[row] - expected).max()
        assert diff <= 1e-4, (name, row, diff)


@pytest.mark.parametrize(
    "name, wrong",
    [
        ("gemma3", {"rope_local_base": 0.0}),  # one RoPE base for every layer
        ("gemma3", {"query_scale": 0.0}),  # head_dim ** -0.5
        ("gemma3", {"norm_plus_one": False}),
        ("gemma3", {"scale_embeddings": False}),
        ("gemma3", {"global_every": 0}),  # every layer sliding
        ("llama3", {"rope_scaling": ""}),
    ],
)
def test_the_reference_sees_each_feature(name, wrong):
    """Each feature moves the logits far more than the tolerance: the comparisons above test it."""
    config = FAMILIES[name]
    params = random_params(config)
    tokens = _tokens(1, 24, config.vocab_size, seed=1)
    logits = np.asarray(forward(config, params, jnp.asarray(tokens))[0])[0]
    assert np.abs(logits - _numpy_forward(dataclasses.replace(config, **wrong), params, tokens[0])).max() > 1e-2


def test_layers_have_their_window_and_rope():
    assert [GEMMA3.window_of_layer(i) for i in range(6)] == [4, 4, 0, 4, 4, 0]
    assert [GEMMA3.rope_of_layer(i)[0] for i in range(6)] == [1e4, 1e4, 1e6, 1e4, 1e4, 1e6]
    assert {QWEN2.rope_of_layer(i) for i in range(2)} == {(1e6, "")}
    # without a local base, sliding layers use rope_base
    assert dataclasses.replace(GEMMA3, rope_local_base=0.0).rope_of_layer(0) == (1e6, "")
    # scaling applies to the layers on rope_base only (transformers scales Gemma-3's global RoPE)
    scaled = FAMILIES["gemma3-linear"]
    assert [scaled.rope_of_layer(i)[1] for i in range(3)] == ["", "", "linear"]
    assert {LLAMA3.rope_of_layer(i)[1] for i in range(3)} == {"llama3"}


def test_linear_scaling_divides_every_frequency():
    np.testing.assert_allclose(
        np.asarray(rope_inv_freq(16, 1e4, "linear", 8.0)), _numpy_inv_freq(16, 1e4) / 8, rtol=2e-6
    )


def test_norm_plus_one_initialises_norms_to_zero():
    def norm_scales(config):
        leaves = jax.tree_util.tree_leaves_with_path(init_params(config))
        return [np.asarray(x) for path, x in leaves if "scale" in jax.tree_util.keystr(path)]

    scales = norm_scales(dataclasses.replace(GEMMA3, num_layers=1))
    assert len(scales) == 7  # four block norms, q/k norms, the final norm
    assert all(np.all(s == 0) for s in scales)
    assert all(np.all(s == 1) for s in norm_scales(QWEN2))


def test_embedding_scale_rounds_in_the_parameter_dtype(monkeypatch):
    """Gemma multiplies by sqrt(d_model) cast to the weight dtype: in bf16, sqrt(40) = 6.3246 is 6.3125."""
    config = dataclasses.replace(GEMMA3, num_layers=1, param_dtype="bfloat16", compute_dtype="float32")
    params = random_params(config)
    inputs = []  # the first norm's input is the scaled embedding
    original = RMSNorm.__call__
    monkeypatch.setattr(RMSNorm, "__call__", lambda self, x: inputs.append(x) or original(self, x))
    eager_forward(config, params, jnp.asarray([[5]]))
    assert float(jnp.asarray(40**0.5, jnp.bfloat16)) == 6.3125
    expected = (params["embed"][5] * jnp.bfloat16(6.3125)).astype(jnp.float32)
    assert inputs[0].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(inputs[0][0, 0]), np.asarray(expected))


# --- the cache, prefix and packed paths with per-layer bases and llama3 frequencies ---


@pytest.mark.parametrize("name", ["gemma3", "llama3"])
def test_cached_decode_and_shared_prefix_equal_full_forward(name):
    config = FAMILIES[name]
    params = random_params(config)
    tokens = jnp.asarray(_tokens(2, 14, config.vocab_size, seed=2))
    full, _ = forward(config, params, tokens)
    prefill, cache = forward(config, params, tokens[:, :8], cache=KVCache.empty(config, 2, 16))
    np.testing.assert_allclose(prefill, full[:, :8], atol=2e-5, rtol=2e-5)
    for t in range(8, 14):
        step, cache = forward(config, params, tokens[:, t : t + 1], cache=cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=2e-5, rtol=2e-5)
    # one prompt (row 0's first 8 tokens) shared by two rows that continue differently
    _, prompt = forward(config, params, tokens[:1, :8], cache=KVCache.empty(config, 1, 8))
    rows = jnp.concatenate([tokens[:1, 8:], tokens[1:, 8:]])
    positions = jnp.broadcast_to(8 + jnp.arange(6, dtype=jnp.int32), (2, 6))
    own, _ = forward(config, params, rows, positions, None, KVCache.empty(config, 2, 6), prompt)
    other = jnp.concatenate([tokens[:1, :8], tokens[1:, 8:]], axis=1)
    np.testing.assert_allclose(own[0], full[0, 8:], atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(own[1], forward(config, params, other)[0][0, 8:], atol=2e-5, rtol=2e-5)


def test_packed_rows_with_per_layer_bases():
    config = GEMMA3
    params = random_params(config)
    lengths = (7, 9)
    alone = [_tokens(1, n, config.vocab_size, seed=20 + i) for i, n in enumerate(lengths)]
    row = jnp.asarray(np.concatenate(alone, axis=1))
    segments = jnp.asarray([[1] * 7 + [2] * 9])
    positions = jnp.asarray([list(range(7)) + list(range(9))])
    logits, _ = forward(config, params, row, positions, segment_ids_BT=segments)
    np.testing.assert_allclose(logits[0, :7], forward(config, params, jnp.asarray(alone[0]))[0][0], atol=2e-5)
    np.testing.assert_allclose(logits[0, 7:], forward(config, params, jnp.asarray(alone[1]))[0][0], atol=2e-5)


# --- config checks ---


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"model.rope_scaling": "yarn"}, "model.rope_scaling must be '', 'llama3' or 'linear', got 'yarn'"),
        ({"model.rope_scaling_factor": 0.0}, "model.rope_scaling_factor must be positive"),
        ({"model.rope_original_max_len": 0}, "model.rope_original_max_len must be positive"),
        ({"model.rope_scaling": "llama3", "model.rope_low_freq_factor": 4.0}, "must be below"),
        ({"model.query_scale": -1.0}, "model.query_scale must be >= 0"),
        ({"model.rope_local_base": -1.0}, "model.rope_local_base must be >= 0"),
    ],
)
def test_bad_family_options_are_config_errors(overrides, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        config_lib.load(None, overrides)


# --- parity with transformers' own models (every weight random) ---


def _hf_model(family, config):
    """A transformers model of the same shape as `config`, every parameter random."""
    torch, transformers = pytest.importorskip("torch"), pytest.importorskip("transformers")
    c = config
    common = dict(
        vocab_size=c.vocab_size,
        hidden_size=c.d_model,
        intermediate_size=c.mlp_dim,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim,
        rms_norm_eps=c.norm_eps,
        tie_word_embeddings=c.tie_embeddings,
        max_position_embeddings=256,
    )
    if family == "gemma3":  # the keys that published checkpoints carry
        hf_config = transformers.Gemma3TextConfig(
            **common,
            query_pre_attn_scalar=round(c.query_scale**-2),
            sliding_window=c.sliding_window,
            sliding_window_pattern=c.global_every,
            rope_theta=c.rope_base,
            rope_local_base_freq=c.rope_local_base,
            rope_scaling={"rope_type": "linear", "factor": c.rope_scaling_factor} if c.rope_scaling else None,
        )
    elif family == "llama3":  # the rope_parameters form that transformers 5 writes
        rope = {"rope_type": "llama3", "rope_theta": c.rope_base, "factor": c.rope_scaling_factor}
        rope |= {"low_freq_factor": c.rope_low_freq_factor, "high_freq_factor": c.rope_high_freq_factor}
        rope["original_max_position_embeddings"] = c.rope_original_max_len
        hf_config = transformers.LlamaConfig(**common, rope_parameters=rope)
    else:
        rope = {"rope_type": "default", "rope_theta": c.rope_base}
        hf_config = transformers.Qwen2Config(**common, rope_parameters=rope)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied: lm_head is embed_tokens, listed once
            if "norm" in name:
                p.copy_((0 if c.norm_plus_one else 1) + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
            else:  # [out, in]; the embedding [V, D]
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
    return model


def _params_from_hf(config, model):
    """The plan's mapping, by hand: linear weights are [out, in]."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    D, N, KV, H = config.d_model, config.num_heads, config.num_kv_heads, config.head_dim
    params = {"embed": sd["model.embed_tokens.weight"], "final_norm": {"scale": sd["model.norm.weight"]}, "blocks": {}}
    if not config.tie_embeddings:
        params["unembed"] = sd["lm_head.weight"].T
    for i in range(config.num_layers):
        w = {k.removeprefix(f"model.layers.{i}."): v for k, v in sd.items() if k.startswith(f"model.layers.{i}.")}
        attention = {
            "q": w["self_attn.q_proj.weight"].T.reshape(D, N, H),
            "k": w["self_attn.k_proj.weight"].T.reshape(D, KV, H),
            "v": w["self_attn.v_proj.weight"].T.reshape(D, KV, H),
            "o": w["self_attn.o_proj.weight"].T.reshape(N, H, D),
        }
        if config.qkv_bias:
            attention["q_bias"] = w["self_attn.q_proj.bias"].reshape(N, H)
            attention["k_bias"] = w["self_attn.k_proj.bias"].reshape(KV, H)
            attention["v_bias"] = w["self_attn.v_proj.bias"].reshape(KV, H)
        if config.qk_norm:
            attention["q_norm"] = {"scale": w["self_attn.q_norm.weight"]}
            attention["k_norm"] = {"scale": w["self_attn.k_norm.weight"]}
        mlp = {name: w[f"mlp.{name}_proj.weight"].T for name in ("gate", "up", "down")}
        block = {"attention": attention, "mlp": mlp, "attention_norm": {"scale": w["input_layernorm.weight"]}}
        if config.post_norms:  # Gemma: four norms
            block["post_attention_norm"] = {"scale": w["post_attention_layernorm.weight"]}
            block["mlp_norm"] = {"scale": w["pre_feedforward_layernorm.weight"]}
            block["post_mlp_norm"] = {"scale": w["post_feedforward_layernorm.weight"]}
        else:  # Llama/Qwen: post_attention_layernorm is the pre-MLP norm
            block["mlp_norm"] = {"scale": w["post_attention_layernorm.weight"]}
        params["blocks"][i] = block
    params = jax.tree.map(jnp.asarray, params)
    expected = abstract_params(config)
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    assert jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, params, expected)) == [True] * len(
        jax.tree.leaves(expected)
    )
    return params


@pytest.mark.parametrize("name", ["gemma3", "gemma3-untied", "gemma3-linear", "llama3", "llama3-tied", "qwen2"])
def test_logits_equal_transformers(name):
    torch = pytest.importorskip("torch")
    config = FAMILIES[name]
    model = _hf_model(name.split("-")[0], config)
    tokens = _tokens(2, 80, config.vocab_size, seed=3)
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(tokens).long()).logits.numpy()
    logits = np.asarray(forward(config, _params_from_hf(config, model), jnp.asarray(tokens))[0])
    diff = np.abs(logits - expected).max()
    assert diff <= 1e-4, (name, diff)
