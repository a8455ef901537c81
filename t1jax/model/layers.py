"""Small building blocks: parameters with logical axes, RMSNorm, rotary embeddings."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

_FLAT_DRAW_LIMIT = 1 << 24


def param(rngs: nnx.Rngs, shape, axes: tuple[str, ...], dtype, init: str | int = "normal") -> nnx.Param:
    """A parameter tagged with logical axis names (mapped to mesh axes by t1jax.parallel).

    init: "ones", "zeros", or N(0, 1/fan_in) where fan_in is the given int or, for "normal",
    the first dimension (projections list their input axis first).
    """
    assert len(shape) == len(axes), (shape, axes)
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        fan_in = shape[0] if init == "normal" else int(init)
        size = math.prod(shape)
        # A 1-D draw compiles ~4x faster on CPU than an N-D one; large params are drawn in
        # their own shape so that each device can generate just its shard.
        draw_shape = (size,) if size < _FLAT_DRAW_LIMIT else shape
        value = jax.random.normal(rngs.params(), draw_shape, dtype).reshape(shape) * (1.0 / fan_in) ** 0.5
    return nnx.Param(value, logical_axes=axes)


class RMSNorm(nnx.Module):
    """x / rms(x) * scale, computed in float32; with plus_one, x / rms(x) * (1 + scale) with the
    scale starting at 0 (Gemma's convention: its checkpoints store the offset from 1)."""

    def __init__(self, dim: int, eps: float, dtype, rngs: nnx.Rngs, axis_name: str = "norm", plus_one: bool = False):
        self.scale = param(rngs, (dim,), (axis_name,), dtype, init="zeros" if plus_one else "ones")
        self.eps, self.plus_one = eps, plus_one

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        scale = self.scale[...].astype(jnp.float32)
        if self.plus_one:  # 1 + w in float32: in a bf16 weight it would round
            scale = 1.0 + scale
        return (normed * scale).astype(x.dtype)


def rope_inv_freq(head_dim: int, base: float, scaling: str = "", factor: float = 1.0, llama3=(1.0, 4.0, 8192), xp=jnp):
    """RoPE's inverse frequencies [head_dim // 2], float32.

    scaling "linear": every frequency divided by `factor`. "llama3" (Llama 3.1+), with llama3 =
    (low_freq_factor, high_freq_factor, original_max_len): divides by `factor` the frequencies
    whose wavelength exceeds original_max_len / low_freq_factor, keeps those below
    original_max_len / high_freq_factor, and interpolates smoothly between (transformers'
    _compute_llama3_parameters; cos and sin are not rescaled). xp: jax.numpy, or numpy for
    constants computed outside any device (the model's per-layer constants).
    """
    half = head_dim // 2
    inv_freq = (base ** (-xp.arange(half, dtype=xp.float32) / half)).astype(xp.float32)
    if scaling == "linear":
        return inv_freq / factor
    if scaling != "llama3":
        return inv_freq
    low, high, original_len = llama3
    wavelen = 2 * math.pi / inv_freq
    smooth = (original_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    inv_freq_long = xp.where(wavelen > original_len / low, inv_freq / factor, smoothed)
    return xp.where(wavelen < original_len / high, inv_freq, inv_freq_long).astype(xp.float32)


def rotary(x_BTNH, positions_BT, inv_freq_F):
    """Rotary position embedding, "rotate half" convention (as in Llama/Qwen/Gemma weights);
    inv_freq_F from rope_inv_freq."""
    angles_BTF = positions_BT.astype(jnp.float32)[..., None] * inv_freq_F
    sin, cos = jnp.sin(angles_BTF)[:, :, None, :], jnp.cos(angles_BTF)[:, :, None, :]
    x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BTNH.dtype)
