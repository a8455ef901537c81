"""Attention of a pass without a KV cache (training, scoring), by one of three implementations
(model.attention) that compute the same thing:

- "xla": einsums and a float32 softmax, as Attention does with a cache (the reference);
- "dot_product_attention": jax.nn.dot_product_attention with a boolean mask; cuDNN's fused
  kernel on GPU when the inputs suit it (see `_cudnn_suits`), XLA's implementation elsewhere;
- "splash": the TPU splash-attention Pallas kernel, interpreted off TPU (slow: for tests).

Every query attends to the keys of its own segment (packed rows) at positions p - w + 1 .. p
(w: the sliding window; 0 or None: global), never to a masked key (key position -1).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec

from t1jax.errors import ConfigError

IMPLEMENTATIONS = ("xla", "dot_product_attention", "splash")
# Mesh axes that splash's shard_map splits rows and heads over: t1jax's default mesh.rules for
# the logical axes 'batch' and 'heads' / 'kv_heads' (t1jax.config.devices).
BATCH_AXES = ("data", "fsdp")
HEAD_AXES = ("tensor",)
_MASKED = -1e30  # finite, as in Attention: a query with every key masked gets a uniform row
_SPLASH_BLOCK = 128  # the kernel's sequence blocks are multiples of this
_TARGET = contextvars.ContextVar("t1jax_kernel_target", default=None)


@contextlib.contextmanager
def compiling_for(platform: str):
    """Kernels traced inside compile for `platform` ("tpu", "cpu", ...) rather than this process's
    backend: `t1jax plan` compiles for TPU devices on a host whose backend is the CPU."""
    token = _TARGET.set(platform)
    try:
        yield
    finally:
        _TARGET.reset(token)


def _platform() -> str:
    return _TARGET.get() or jax.default_backend()


def attend(
    q_BTNH,
    k_BTKH,
    v_BTKH,
    positions_BT,
    key_pos_BT,
    segment_ids_BT,
    window,
    scale,
    impl,
    *,
    window_choices=None,
    batch_axes=BATCH_AXES,
    head_axes=HEAD_AXES,
):
    """Grouped-query self-attention of T tokens; returns [B, T, N, H] in q's dtype.

    q_BTNH: queries after RoPE, not yet scaled; k_BTKH, v_BTKH: keys and values, N = G * K
        (query head n reads kv head n // G).
    positions_BT: each token's position; key_pos_BT: the same with -1 for a masked key.
    segment_ids_BT: None, or the sequence each token belongs to in a packed row (ids >= 0).
    window: 0 or None (global), the window size w, or a traced int32 scalar (a scanned layer's);
        splash then needs every value it may take as `window_choices` (static ints; a value
        outside them runs the first).
    scale: what the queries are multiplied by. impl: one of IMPLEMENTATIONS.
    batch_axes, head_axes: mesh axes that splash's shard_map splits rows and heads over.

    Queries whose every key is masked (padding) get an output that differs between impls.
    """
    if impl not in IMPLEMENTATIONS:
        raise ConfigError(f"model.attention must be one of {IMPLEMENTATIONS}, got {impl!r}")
    q_BTNH = (q_BTNH * scale).astype(q_BTNH.dtype)  # in q's dtype, as Attention scales
    k_BTKH, v_BTKH = k_BTKH.astype(q_BTNH.dtype), v_BTKH.astype(q_BTNH.dtype)
    if impl == "splash":
        return _splash_attention(
            q_BTNH, k_BTKH, v_BTKH, key_pos_BT, segment_ids_BT, window, window_choices, batch_axes, head_axes
        )
    allowed_BTS = allowed_keys(positions_BT, key_pos_BT, segment_ids_BT, window)
    if impl == "xla":
        return xla_attention(q_BTNH, k_BTKH, v_BTKH, allowed_BTS)
    implementation = "cudnn" if _cudnn_suits(q_BTNH) else None
    return jax.nn.dot_product_attention(
        q_BTNH, k_BTKH, v_BTKH, mask=allowed_BTS[:, None], scale=1.0, implementation=implementation
    )


def allowed_keys(positions_BT, key_pos_BT, segment_ids_BT, window):
    """[B, T, S] bool: may query t attend to key s (causal by position, windowed, same segment)."""
    q, k = positions_BT[:, :, None], key_pos_BT[:, None, :]
    allowed = (k >= 0) & (k <= q)
    if isinstance(window, jax.core.Tracer):  # a scanned layer's window
        allowed &= (window == 0) | (q - k < window)
    elif window:
        allowed &= q - k < window
    if segment_ids_BT is not None:
        allowed &= segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]
    return allowed


def xla_attention(q_BTNH, k_BTKH, v_BTKH, allowed_BTS):
    """Attention's own math (scaled queries): the G query heads of a kv head and their T
    positions form one [G*T, H] x [H, S] matmul per (row, kv head); float32 scores and softmax."""
    B, T, N, H = q_BTNH.shape
    K = k_BTKH.shape[2]
    G = N // K
    q_BKQH = q_BTNH.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, H)
    scores = jnp.einsum("bkqh,bskh->bkqs", q_BKQH, k_BTKH, preferred_element_type=jnp.float32)
    scores = jnp.where(allowed_BTS[:, None, None], scores.reshape(B, K, G, T, -1), _MASKED)
    probs = jax.nn.softmax(scores, axis=-1).astype(q_BTNH.dtype).reshape(B, K, G * T, -1)
    out = jnp.einsum("bkqs,bskh->bkqh", probs, v_BTKH)
    return out.reshape(B, K, G, T, H).transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)


def _cudnn_suits(q_BTNH) -> bool:
    """cuDNN's fused attention takes 16-bit inputs only, head dims that are multiples of 8 up to
    128 (256 on Hopper and later; we keep to 128), and, with a mask, an even sequence length in
    training; anything else runs XLA's implementation (no error)."""
    H, T = q_BTNH.shape[-1], q_BTNH.shape[1]
    return (
        _platform() == "gpu" and q_BTNH.dtype in (jnp.bfloat16, jnp.float16) and H % 8 == 0 and H <= 128 and T % 2 == 0
    )


def _splash_attention(
    q_BTNH, k_BTKH, v_BTKH, key_pos_BT, segment_ids_BT, window, window_choices, batch_axes, head_axes
):
    """Splash attention masks by token index (a causal or local mask, built once per shape) and
    segment ids (built per row), not by position. It equals the position rule when, within each
    segment, a token's position minus its index is the same for every token: true for t1jax's
    rows (packed or one sequence per row, each sequence from position 0, padding after it, or
    left padding), not for arbitrary positions. Masked keys (key position -1: padding) get
    segment -1, so they are seen by other padding tokens only (never an empty softmax row).

    T is padded up to a multiple of 128 (blocks of 512, 256 or 128 tokens; the padding is a
    segment of its own after every real token) and the output sliced back. Any head dim: the
    kernel compiles for TPU (v5e, v6e, v5p, ahead of time) with head dims 16, 64, 80, 128, 256.
    GQA runs as is: the kernel reads kv head n // G for query head n.
    """
    segments = jnp.zeros_like(key_pos_BT) if segment_ids_BT is None else segment_ids_BT
    segments = jnp.where(key_pos_BT >= 0, segments, -1).astype(jnp.int32)
    if window is None or not isinstance(window, jax.core.Tracer):
        return _splash_sharded(q_BTNH, k_BTKH, v_BTKH, segments, int(window or 0), batch_axes, head_axes)
    if not window_choices:
        raise ConfigError("splash attention with layers of different windows needs window_choices (static ints)")
    choices = tuple(int(w) for w in window_choices)
    branches = [
        functools.partial(_splash_sharded, window=w, batch_axes=batch_axes, head_axes=head_axes) for w in choices
    ]
    index = jnp.argmax(jnp.asarray(choices, jnp.int32) == window)
    return jax.lax.switch(index, branches, q_BTNH, k_BTKH, v_BTKH, segments)


def _splash_sharded(q_BTNH, k_BTKH, v_BTKH, segments_BT, window, batch_axes, head_axes):
    """The kernel per device: a Pallas call cannot be split by XLA's partitioner, so under a mesh
    (from jax.set_mesh or the inputs' shardings) it runs in a shard_map, rows over batch_axes
    and heads over head_axes where they divide them (the rest replicated)."""
    run = functools.partial(_splash_local, window=window)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        mesh = getattr(getattr(jax.typeof(q_BTNH), "sharding", None), "mesh", mesh)
    if mesh.empty or mesh.size == 1:
        return run(q_BTNH, k_BTKH, v_BTKH, segments_BT)
    B, _, N, _ = q_BTNH.shape
    K = k_BTKH.shape[2]
    rows = _dividing_axes(mesh, batch_axes, B)
    heads = _dividing_axes(mesh, tuple(a for a in head_axes if a not in rows), math.gcd(N, K))
    qkv = PartitionSpec(rows or None, None, heads or None, None)
    return jax.shard_map(
        run,
        mesh=mesh,
        in_specs=(qkv, qkv, qkv, PartitionSpec(rows or None, None)),
        out_specs=qkv,
        check_vma=False,  # no collectives inside
    )(q_BTNH, k_BTKH, v_BTKH, segments_BT)


def _dividing_axes(mesh, axes, size):
    """The leading mesh axes (of those not manual and larger than 1) whose product divides size."""
    kinds = dict(zip(mesh.axis_names, mesh.axis_types))
    usable = [a for a in axes if a in kinds and mesh.shape[a] > 1 and kinds[a] != jax.sharding.AxisType.Manual]
    chosen, product = [], 1
    for a in usable:
        if size % (product * mesh.shape[a]):
            break
        chosen.append(a)
        product *= mesh.shape[a]
    return tuple(chosen)


def _splash_local(q_BTNH, k_BTKH, v_BTKH, segments_BT, window):
    interpret = _platform() != "tpu"
    _, T, N, _ = q_BTNH.shape
    T_pad = -(-T // _SPLASH_BLOCK) * _SPLASH_BLOCK
    kernel = _splash_kernel(N, T_pad, window, interpret)

    def heads_first(x):  # [B, T, heads, H] -> [B, heads, T_pad, H], zero padded
        return jnp.pad(x, ((0, 0), (0, T_pad - T), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    # padded tokens: their own segment, after every real token, so no real query sees them
    segments = jnp.pad(segments_BT, ((0, 0), (0, T_pad - T)), constant_values=-2)

    def one_row(q, k, v, seg):
        return kernel(q, k, v, segment_ids=splash.SegmentIds(q=seg, kv=seg))

    out = jax.vmap(one_row)(heads_first(q_BTNH), heads_first(k_BTKH), heads_first(v_BTKH), segments)
    return out.transpose(0, 2, 1, 3)[:, :T]


def _splash_kernel(num_heads: int, length: int, window: int, interpret: bool):
    """The kernel for `num_heads` query heads over `length` tokens (a multiple of 128): causal,
    or local with w - 1 keys before the query and none after. Built at every trace (it holds
    arrays of the trace); the numpy work behind it, the mask's block map, is cached by JAX."""
    shape = (length, length)
    one_head = splash.LocalMask(shape, (window - 1, 0), offset=0) if window else splash.CausalMask(shape)
    block = next(b for b in (512, 256, 128) if length % b == 0)
    sizes = splash.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    mask = splash.MultiHeadMask([one_head] * num_heads)
    return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
