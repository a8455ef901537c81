"""Logical axes -> mesh axes, and the shardings of params, optimizer state and batches.

Model code names logical axes (batch, embed, heads, ...); `config.mesh.rules` is the one
table that maps them to mesh axes. Changing the parallelism is a config change, never code.
"""

from __future__ import annotations

import math
import warnings

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from t1jax.errors import ConfigError


def rules_table(rules_config) -> dict[str, tuple[str, ...]]:
    """{'batch': ('data', 'fsdp'), 'length': (), ...} from the config's comma-separated strings."""
    return {name: tuple(a.strip() for a in axes.split(",") if a.strip()) for name, axes in rules_config.items()}


def partition_spec(
    logical: tuple[str | None, ...],
    rules: dict,
    shape=None,
    mesh: Mesh | None = None,
    divisible_only: bool = False,
    replicated_out: list | None = None,
) -> PartitionSpec:
    """PartitionSpec for an array whose dimensions have these logical names.

    With `shape` and `mesh`, a dimension that the mesh axes do not divide is an error that
    names the axis (uneven shards are slow and fail on some backends), or, with
    `divisible_only`, replicated instead: (logical axis, size, mesh axes) is then appended to
    `replicated_out` if given.
    """
    spec, used = [], set()
    for dim, name in enumerate(logical):
        if name is None:
            spec.append(None)
            continue
        if name not in rules:
            raise ConfigError(f"logical axis '{name}' has no entry in mesh.rules (known: {', '.join(rules)})")
        axes = tuple(a for a in rules[name] if a not in used)  # a mesh axis shards one dim only
        if mesh is not None:
            axes = tuple(a for a in axes if mesh.shape[a] > 1)
        if shape is not None and mesh is not None and axes:
            size = 1
            for a in axes:
                size *= mesh.shape[a]
            if shape[dim] % size and divisible_only:
                if replicated_out is not None:
                    replicated_out.append((name, shape[dim], axes))
                axes = ()
            elif shape[dim] % size:
                raise ConfigError(
                    f"logical axis '{name}' has size {shape[dim]}, which mesh axes "
                    f"{axes} (total {size}) do not divide; change the mesh or mesh.rules.{name}"
                )
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else (axes or None))
    return PartitionSpec(*spec)


def tree_shardings(abstract_tree, logical_tree, rules: dict, mesh: Mesh, divisible_only: bool = False):
    """NamedShardings for a tree of arrays, given a same-shaped tree of logical-axis tuples.

    A dimension that its mesh axes do not divide is an error (what training configs want), or,
    with `divisible_only`, replicated, with one warning listing every such logical axis: what
    an imported model needs whose head counts are what they are (Gemma 3's single KV head,
    Qwen2.5 0.5B's 14 query heads on a tensor axis of 4).
    """
    replicated_dims: list = []
    shardings = jax.tree.map(
        lambda x, axes: NamedSharding(
            mesh, partition_spec(axes, rules, x.shape, mesh, divisible_only, replicated_dims)
        ),
        abstract_tree,
        logical_tree,
        is_leaf=lambda x: isinstance(x, tuple) and all(isinstance(a, (str, type(None))) for a in x),
    )
    if replicated_dims:
        listed = ", ".join(
            f"'{name}' (size {size}, mesh axes {', '.join(axes)})" for name, size, axes in sorted(set(replicated_dims))
        )
        warnings.warn(f"replicated because the mesh does not divide them: {listed}", stacklevel=2)
    return shardings


def optimizer_shardings(tx: optax.GradientTransformation, abstract_params, param_shardings, mesh: Mesh):
    """Shardings for tx.init(params): moments follow their params, the rest is replicated.

    Without these as jit out_shardings, optimizer state lands replicated or on one device.
    """
    abstract_state = jax.eval_shape(tx.init, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    # a frozen parameter (optim.trainable) has an empty MaskedNode where its moments would be
    masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    return optax.tree_map_params(
        tx,
        lambda value, sharding: value if masked(value) else sharding,
        abstract_state,
        param_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=masked,
    )


def batch_sharding(mesh: Mesh, rules: dict, ndim: int = 2) -> NamedSharding:
    """Batch arrays [batch, length, ...]: rows over the 'batch' rule, the rest replicated."""
    logical = ("batch", "length") + (None,) * (ndim - 2)
    return NamedSharding(mesh, partition_spec(logical[:ndim], rules, mesh=mesh))


def batch_shards(mesh: Mesh, rules: dict) -> int:
    """How many pieces the 'batch' rule splits a batch's rows into on this mesh."""
    return math.prod(mesh.shape[axis] for axis in rules.get("batch", ()))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
