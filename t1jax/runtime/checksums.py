"""Checksums of a checkpoint's contents, so a restore can tell the saved values from damaged ones.

Each array gets two 32-bit sums of its bit pattern, computed on device where the array lives
(a sharded array is reduced across its shards; nothing is gathered to one host):

    h1 = sum_i w_i * (2 i + 1)                 mod 2^32
    h2 = sum_i rotl(w_i ^ (i * 0x9E3779B9), 13) * 0x85EBCA77   mod 2^32

with w_i the i-th element's bits as an unsigned integer and i its row-major index. A change of one
element changes h1 for certain (an odd multiplier is invertible mod 2^32); h2 guards against
changes that cancel in h1. Integer sums do not depend on the order of reduction, so the values
are the same on any mesh. The iterator state (JSON) gets a sha256 of its canonical form.
"""

from __future__ import annotations

import hashlib
import json

import jax
import jax.numpy as jnp
from jax import lax

_GOLDEN = 0x9E3779B9
_MIX = 0x85EBCA77


def leaf_name(path) -> str:
    """'policy/params/embed' for a key path, whatever mix of dicts, dataclasses and tuples it crosses."""
    parts = []
    for key in path:
        for attribute in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def array_checksums(tree) -> dict[str, list[int]]:
    """{leaf name: [h1, h2]} for every array of `tree`."""
    named = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not named:
        return {}
    sums = _checksums([leaf for _, leaf in named])
    return {leaf_name(path): [int(a), int(b)] for (path, _), (a, b) in zip(named, jax.device_get(sums))}


def json_checksum(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@jax.jit
def _checksums(leaves):
    return [_leaf_checksum(leaf) for leaf in leaves]


def _leaf_checksum(x):
    words = _as_words(x)
    index = jnp.zeros(words.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(words.ndim)):  # the row-major index, built without reshaping a sharded array
        index = index + lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= words.shape[axis]
    h1 = jnp.sum(words * (index * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)
    mixed = words ^ (index * jnp.uint32(_GOLDEN))
    rotated = (mixed << jnp.uint32(13)) | (mixed >> jnp.uint32(19))
    h2 = jnp.sum(rotated * jnp.uint32(_MIX), dtype=jnp.uint32)
    return jnp.stack([h1, h2])


def _as_words(x):
    """The bits of each element as uint32 (64-bit elements as two words on a new last axis)."""
    x = jnp.asarray(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    words = lax.bitcast_convert_type(x, bits)
    return words.astype(jnp.uint32)
