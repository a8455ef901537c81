"""A static-shape key/value cache shared by prefill and decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KVCache:
    """Per-layer keys [batch, kv_heads, head_dim, slots] and values [batch, kv_heads, slots,
    head_dim] (the layouts that decode fastest on CPU: both contractions of a step then run
    along contiguous memory), the position of the token in each slot (-1: empty or padding)
    and the next slot to write. All sequences in a batch write the same slots; padding is masked by
    `key_pos_BS`, so prompts of different lengths share one cache."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    key_pos_BS: jax.Array
    index: jax.Array

    @classmethod
    def empty(cls, config, batch: int, slots: int) -> KVCache:
        kv, h, dt, n = config.num_kv_heads, config.dim_per_head, config.activations_dtype, config.num_layers
        k = tuple(jnp.zeros((batch, kv, h, slots), dt) for _ in range(n))
        v = tuple(jnp.zeros((batch, kv, slots, h), dt) for _ in range(n))
        return cls(k=k, v=v, key_pos_BS=jnp.full((batch, slots), -1, jnp.int32), index=jnp.zeros((), jnp.int32))

    def grow(self, slots: int) -> KVCache:
        """The same cache with empty slots appended up to `slots` (a copy, so grow rarely)."""
        extra = slots - self.num_slots
        if extra < 0:
            raise ValueError(f"cannot shrink a cache of {self.num_slots} slots to {slots}")
        k = tuple(jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) for x in self.k)
        v = tuple(jnp.pad(x, ((0, 0), (0, 0), (0, extra), (0, 0))) for x in self.v)
        key_pos_BS = jnp.pad(self.key_pos_BS, ((0, 0), (0, extra)), constant_values=-1)
        return KVCache(k=k, v=v, key_pos_BS=key_pos_BS, index=self.index)

    @property
    def num_slots(self) -> int:
        return self.key_pos_BS.shape[1]
