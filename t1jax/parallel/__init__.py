"""Mesh, logical-axis sharding rules and multi-process start-up."""

from t1jax.parallel.distributed import initialize
from t1jax.parallel.host_data import to_global
from t1jax.parallel.mesh import make_mesh, resolve_mesh_shape
from t1jax.parallel.sharding import (
    batch_sharding,
    batch_shards,
    optimizer_shardings,
    partition_spec,
    replicated,
    rules_table,
    tree_shardings,
)

__all__ = [
    "batch_shards",
    "batch_sharding",
    "initialize",
    "make_mesh",
    "optimizer_shardings",
    "partition_spec",
    "replicated",
    "resolve_mesh_shape",
    "rules_table",
    "to_global",
    "tree_shardings",
]
