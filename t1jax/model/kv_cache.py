"""A static-shape key/value cache shared by prefill and decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KVCache:
    """Per-layer keys and values [batch, kv_heads, slots, head_dim] (the layout that decodes
    fastest on CPU), the position of the token in each slot (-1: empty or padding) and the
    next slot to write. All sequences in a batch write the same slots; padding is masked by
    `key_pos_BS`, so prompts of different lengths share one cache."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    key_pos_BS: jax.Array
    index: jax.Array

    @classmethod
    def empty(cls, config, batch: int, slots: int) -> KVCache:
        shape = (batch, config.num_kv_heads, slots, config.dim_per_head)
        zeros = tuple(jnp.zeros(shape, config.activations_dtype) for _ in range(config.num_layers))
        return cls(k=zeros, v=zeros, key_pos_BS=jnp.full((batch, slots), -1, jnp.int32), index=jnp.zeros((), jnp.int32))

    @property
    def num_slots(self) -> int:
        return self.key_pos_BS.shape[1]
