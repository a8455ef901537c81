"""The three attention implementations (t1jax.model.attention_kernels) against each other and
against a numpy loop: packed rows with padding, sliding windows, GQA, bf16, gradients, a
traced window, and splash under an 8-device mesh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from t1jax.errors import ConfigError
from t1jax.model.attention import CAUSAL_BLOCK, _causal_attention
from t1jax.model.attention_kernels import attend

N, K, H = 4, 2, 16  # GQA: two query heads per kv head
KERNELS = ("dot_product_attention", "splash")


def rows(layout: str, T: int = 200):
    """(positions, key_pos, segment_ids or None, real) for 2 rows of T tokens; `real` marks the
    queries whose outputs every implementation must agree on (not padding)."""
    positions = np.zeros((2, T), np.int32)
    key_pos = np.zeros((2, T), np.int32)
    segments = np.zeros((2, T), np.int32)
    real = np.zeros((2, T), bool)
    if layout == "packed":  # 3 + 2 sequences, each from position 0, padding (segment 0) after them
        for r, lengths in enumerate(((70, 90, 25), (120, 60))):
            start = 0
            for s, n in enumerate(lengths, 1):
                positions[r, start : start + n] = np.arange(n)
                segments[r, start : start + n] = s
                start += n
            real[r, :start] = True
        return positions, positions.copy(), segments, real
    # one sequence per row, padding masked by key position -1: right-padded, left-padded
    n = 150
    positions[0, :n] = np.arange(n)
    real[0, :n] = True
    positions[1, T - n :] = np.arange(n)
    real[1, T - n :] = True
    key_pos = np.where(real, positions, -1)
    return positions, key_pos, None, real


def qkv(T: int = 200, dtype=jnp.float32, B: int = 2, seed: int = 0):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(kq, (B, T, N, H), dtype),
        jax.random.normal(kk, (B, T, K, H), dtype),
        jax.random.normal(kv, (B, T, K, H), dtype),
    )


def numpy_attention(q, k, v, positions, key_pos, segments, window, scale):
    """One query, one head at a time, in float64: the rule written out as loops."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    B, T, Nq, _ = q.shape
    G = Nq // k.shape[2]
    out = np.zeros_like(q)
    for b in range(B):
        for t in range(T):
            p = positions[b, t]
            keys = [
                s
                for s in range(T)
                if 0 <= key_pos[b, s] <= p
                and (not window or p - key_pos[b, s] < window)
                and (segments is None or segments[b, s] == segments[b, t])
            ]
            if not keys:
                continue
            for n in range(Nq):
                logits = k[b, keys, n // G] @ (q[b, t, n] * scale)
                w = np.exp(logits - logits.max())
                out[b, t, n] = (w / w.sum()) @ v[b, keys, n // G]
    return out


def run(impl, q, k, v, layout, window, **kwargs):
    positions, key_pos, segments, _ = rows(layout, q.shape[1])
    seg = None if segments is None else jnp.asarray(segments)
    return attend(q, k, v, jnp.asarray(positions), jnp.asarray(key_pos), seg, window, H**-0.5, impl, **kwargs)


def max_rel_diff(out, ref, real):
    out, ref = np.asarray(out, np.float64)[real], np.asarray(ref, np.float64)[real]
    return np.abs(out - ref).max() / np.abs(ref).max()


@functools.cache
def numpy_packed_window_24():
    q, k, v = qkv()
    positions, key_pos, segments, _ = rows("packed")
    return numpy_attention(q, k, v, positions, key_pos, segments, 24, H**-0.5)


@pytest.mark.parametrize("impl", ("xla", *KERNELS))
def test_each_matches_a_numpy_loop(impl):
    # 200 tokens: splash pads them to 2 blocks of 128
    diff = max_rel_diff(run(impl, *qkv(), "packed", 24), numpy_packed_window_24(), rows("packed")[3])
    print(f"{impl} vs numpy, packed window=24: max |diff| / max |out| = {diff:.2e}")
    assert diff < 1e-5


@pytest.mark.parametrize("layout,window", [("packed", 24), ("masked", 40), ("masked", 0)])
def test_the_models_causal_blocks_match_a_numpy_loop(layout, window):
    """The model's own attention without a cache (model.attention=xla): 200 queries in blocks of
    64, 64, 64 and 8, each against the keys up to its last position."""
    assert CAUSAL_BLOCK == 64
    q, k, v = qkv()
    positions, key_pos, segments, real = rows(layout)
    seg = None if segments is None else jnp.asarray(segments)
    scale = H**-0.5
    keys, values = (x.transpose(0, 2, 1, 3) for x in (k, v))
    out = _causal_attention(q * scale, keys, values, jnp.asarray(positions), jnp.asarray(key_pos), seg, window)
    ref = numpy_attention(q, k, v, positions, key_pos, segments, window, scale)
    assert max_rel_diff(out, ref, real) < 1e-5


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize("layout,window", [("packed", 32), ("packed", 0), ("masked", 40), ("masked", None)])
def test_kernels_match_xla_in_float32(impl, layout, window):
    q, k, v = qkv()
    out = run(impl, q, k, v, layout, window)
    diff = max_rel_diff(out, run("xla", q, k, v, layout, window), rows(layout)[3])
    print(f"{impl} {layout} window={window}: max |diff| / max |out| = {diff:.2e}")
    assert out.dtype == jnp.float32 and out.shape == q.shape
    assert np.isfinite(np.asarray(out)).all()  # padding queries too
    assert diff < 1e-5


@pytest.mark.parametrize("impl", KERNELS)
def test_kernels_match_xla_in_bfloat16(impl):
    q, k, v = qkv(dtype=jnp.bfloat16)
    out = run(impl, q, k, v, "packed", 32)
    real = rows("packed")[3]
    exact = run("xla", *(x.astype(jnp.float32) for x in (q, k, v)), "packed", 32)
    diff, xla_diff = max_rel_diff(out, exact, real), max_rel_diff(run("xla", q, k, v, "packed", 32), exact, real)
    print(f"{impl} bf16 vs float32: {diff:.2e} (xla bf16: {xla_diff:.2e})")
    assert out.dtype == jnp.bfloat16
    assert diff < 2e-2  # bf16 keeps 8 bits: a few roundings of 2**-8 ~ 4e-3


@pytest.mark.parametrize("impl", KERNELS)
def test_gradients_match_xla(impl):
    q, k, v = qkv()
    real = rows("packed")[3]
    # weights only on real queries: padding queries' outputs (and so their gradients) may differ
    weights = jax.random.normal(jax.random.key(1), q.shape) * jnp.asarray(real)[:, :, None, None]

    def loss(impl, q, k, v):
        return jnp.sum(run(impl, q, k, v, "packed", 32) * weights)

    grads = jax.grad(loss, argnums=(1, 2, 3))(impl, q, k, v)
    expected = jax.grad(loss, argnums=(1, 2, 3))("xla", q, k, v)
    for name, g, e in zip("qkv", grads, expected):
        diff = np.abs(np.asarray(g) - np.asarray(e)).max() / np.abs(np.asarray(e)).max()
        print(f"{impl} d{name}: max |diff| / max |grad| = {diff:.2e}")
        assert diff < 1e-5


def test_splash_takes_a_traced_window_from_its_choices():
    q, k, v = qkv()
    windowed = jax.jit(lambda w: run("splash", q, k, v, "packed", w, window_choices=(0, 32)))
    for window in (0, 32):
        diff = max_rel_diff(windowed(jnp.int32(window)), run("xla", q, k, v, "packed", window), rows("packed")[3])
        assert diff < 1e-5
    with pytest.raises(ConfigError, match="window_choices"):
        jax.jit(lambda w: run("splash", q, k, v, "packed", w))(jnp.int32(32))


def test_splash_runs_per_device_under_a_mesh():
    """On 8 devices (data 2, fsdp 2, tensor 2): rows over data and fsdp, heads over tensor; the
    mesh comes from the inputs' shardings, or from jax.set_mesh."""
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    heads = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None, "tensor", None))
    per_row = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None))
    positions, key_pos, segments, real = (np.concatenate([x, x]) for x in rows("packed"))
    args = (*qkv(B=4), *(jnp.asarray(x) for x in (positions, key_pos, segments)))

    def f(q, k, v, positions, key_pos, segments):
        return attend(q, k, v, positions, key_pos, segments, 32, H**-0.5, "splash")

    # each device runs the kernel on its own row (4 rows / 4) and heads (4 / 2 query, 2 / 2 kv)
    local = [(1, 200, 2, 16), (1, 200, 1, 16), (1, 200, 1, 16), (1, 200)]
    with jax.set_mesh(mesh):
        assert local_shapes(jax.make_jaxpr(f)(*args).jaxpr, "shard_map")[-4:] == local
    committed = [jax.device_put(x, heads if x.ndim == 4 else per_row) for x in args]
    assert local_shapes(jax.make_jaxpr(f)(*committed).jaxpr, "shard_map")[-4:] == local
    assert max_rel_diff(jax.jit(f)(*committed), attend(*args, 32, H**-0.5, "xla"), real) < 1e-5

    # and the backward pass, as a train step takes it
    weights = jax.random.normal(jax.random.key(1), args[0].shape) * jnp.asarray(real)[:, :, None, None]

    def loss(impl, q, k, v):
        return jnp.sum(attend(q, k, v, *args[3:], 32, H**-0.5, impl) * weights)

    grads = jax.jit(jax.grad(functools.partial(loss, "splash"), argnums=(0, 1, 2)))(*committed[:3])
    for g, e in zip(grads, jax.grad(functools.partial(loss, "xla"), argnums=(0, 1, 2))(*args[:3])):
        assert np.abs(np.asarray(g) - np.asarray(e)).max() < 1e-5 * np.abs(np.asarray(e)).max()


def local_shapes(jaxpr, primitive):
    """The input shapes of the first `primitive` equation's body (constants it closes over first),
    searched through nested jaxprs."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            return [tuple(v.aval.shape) for v in eqn.params["jaxpr"].invars]
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns") and (found := local_shapes(inner, primitive)):
                return found
    return []


def test_an_unknown_implementation_is_a_config_error():
    with pytest.raises(ConfigError, match="model.attention"):
        run("flash", *qkv(), "packed", 0)
