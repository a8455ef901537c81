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
    """x / rms(x) * scale, computed in float32."""

    def __init__(self, dim: int, eps: float, dtype, rngs: nnx.Rngs, axis_name: str = "norm"):
        self.scale = param(rngs, (dim,), (axis_name,), dtype, init="ones")
        self.eps = eps

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def rotary(x_BTNH, positions_BT, base: float):
    """Rotary position embedding, "rotate half" convention (as in Llama/Qwen/Gemma weights)."""
    half = x_BTNH.shape[-1] // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles_BTF = positions_BT.astype(jnp.float32)[..., None] * inv_freq
    sin, cos = jnp.sin(angles_BTF)[:, :, None, :], jnp.cos(angles_BTF)[:, :, None, :]
    x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BTNH.dtype)
