"""Array checksums against a numpy reference, across shardings, and their sensitivity."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from t1jax.runtime.checksums import array_checksums, json_checksum, leaf_name

M = 2**32


def _reference(x: np.ndarray) -> list[int]:
    """h1, h2 of the module docstring, in Python integers on the raw little-endian bytes."""
    x = np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        words = x.astype(np.uint64).ravel()
    else:
        unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
        words = x.view(unsigned).astype(np.uint64).ravel()
    h1 = h2 = 0
    for i, w in enumerate(int(v) for v in words):
        h1 = (h1 + w * (2 * i + 1)) % M
        mixed = w ^ ((i * 0x9E3779B9) % M)
        rotated = ((mixed << 13) | (mixed >> 19)) % M
        h2 = (h2 + rotated * 0x85EBCA77) % M
    return [h1, h2]


@pytest.mark.parametrize(
    "array",
    [
        np.linspace(-3, 3, 60, dtype=np.float32).reshape(3, 4, 5),
        np.arange(-7, 17, dtype=np.int32).reshape(4, 6),
        (np.arange(30) % 3 == 0).reshape(5, 6),
        np.linspace(-1, 1, 24).astype(ml_dtypes.bfloat16).reshape(2, 12),
        np.float32(2.5),
    ],
    ids=["f32", "i32", "bool", "bf16", "scalar"],
)
def test_matches_the_numpy_reference(array):
    assert array_checksums({"x": jnp.asarray(array)})["x"] == _reference(np.asarray(array))


def test_same_on_any_sharding():
    x = np.random.default_rng(0).standard_normal((16, 24)).astype(np.float32)
    mesh = jax.make_mesh((2, 4), ("a", "b"))
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("a", "b")))
    other = jax.device_put(x, NamedSharding(mesh, PartitionSpec("b", None)))
    assert array_checksums([sharded]) == array_checksums([other]) == array_checksums([jnp.asarray(x)])


def test_any_one_changed_element_or_a_swap_is_seen():
    x = np.random.default_rng(1).standard_normal((8, 9)).astype(np.float32)
    base = array_checksums([x])
    for index in [(0, 0), (3, 4), (7, 8)]:
        changed = x.copy()
        changed[index] = np.nextafter(changed[index], np.float32(np.inf))  # the smallest change: one bit
        assert array_checksums([changed])["0"][0] != base["0"][0]
    swapped = x.copy()
    swapped[[2, 5]] = swapped[[5, 2]]
    assert array_checksums([swapped]) != base


def test_leaf_names_cross_dicts_dataclasses_and_tuples():
    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class State:
        params: dict
        moments: tuple

    tree = {"policy": State(params={"w": jnp.zeros(2)}, moments=(jnp.ones(1), jnp.ones(1)))}
    names = sorted(array_checksums(tree))
    assert names == ["policy/moments/0", "policy/moments/1", "policy/params/w"]
    assert leaf_name([jax.tree_util.DictKey("a"), jax.tree_util.SequenceKey(3)]) == "a/3"


def test_json_checksum_ignores_key_order_only():
    assert json_checksum({"a": 1, "b": [2, 3]}) == json_checksum({"b": [2, 3], "a": 1})
    assert json_checksum({"a": 1}) != json_checksum({"a": 2})
