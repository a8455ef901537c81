"""Moving host (numpy) batches onto the mesh and results back, in single- and multi-process runs."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec


def to_global(local_batch: dict, sharding) -> dict:
    """Global arrays from each process's rows (in one process: simply its batch, sharded)."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def from_whole(array: np.ndarray, sharding) -> jax.Array:
    """A global array from a host array that every process holds whole: each process places
    only the blocks its own devices hold."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def on_mesh(arrays, sharding):
    """Host arrays (a pytree) that every process holds whole, as global arrays with `sharding`
    when the run spans several processes; in one process they are left as they are (jit places
    them)."""
    if jax.process_count() == 1:
        return arrays
    return jax.tree.map(lambda a: from_whole(a, sharding), arrays)


def fetch(arrays):
    """The whole value of each array of a pytree, as numpy, on every process. np.asarray cannot
    read an array whose blocks live partly on other processes' devices; those are gathered,
    all in one program."""
    leaves, treedef = jax.tree.flatten(arrays)
    spread = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and not _local(x)]
    if spread:
        gathered = _gather(tuple(leaves[i] for i in spread))
        for i, x in zip(spread, gathered):
            leaves[i] = x.addressable_data(0)
    return jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves])


def _local(array: jax.Array) -> bool:
    return array.is_fully_addressable or array.is_fully_replicated


def _gather(arrays: tuple) -> tuple:
    """The arrays replicated on every device of their meshes."""
    replicated = tuple(NamedSharding(x.sharding.mesh, PartitionSpec()) for x in arrays)
    return jax.jit(_identity, out_shardings=replicated)(*arrays)


def _identity(*arrays):
    return arrays  # a module-level function: jit reuses the compiled program across calls


def several_processes() -> bool:
    """Whether the run spans several processes (asked without starting a backend, so a grader
    pool forked afterwards inherits no XLA threads)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def process_share(total: int) -> slice:
    """This process's part of `total` items that the processes split in order (all of them in
    one process): ceil(total / processes) each, the last part shorter."""
    if not several_processes():
        return slice(0, total)
    size = -(-total // jax.process_count())
    start = min(jax.process_index() * size, total)
    return slice(start, min(start + size, total))


def gather_shares(local: np.ndarray, total: int) -> np.ndarray:
    """The rows every process computed for its process_share(total), in order: all `total` rows,
    on every process."""
    if not several_processes():
        return np.asarray(local)
    padded = np.zeros((-(-total // jax.process_count()), *np.shape(local)[1:]), np.asarray(local).dtype)
    padded[: len(local)] = local
    return np.asarray(multihost_utils.process_allgather(padded, tiled=True))[:total]
