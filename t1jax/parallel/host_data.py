"""Moving host (numpy) batches onto the mesh, in single- and multi-process runs."""

from __future__ import annotations

import jax


def to_global(local_batch: dict, sharding) -> dict:
    """Global arrays from each process's rows (in one process: simply its batch, sharded)."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
