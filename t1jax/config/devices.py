"""The devices a run uses: the `mesh` section (axis sizes and the sharding rules) and the
`distributed` section (multi-process start-up), each with the check of its values."""

from __future__ import annotations

import ml_collections

from t1jax.config.require import require

MESH_AXES = ("data", "fsdp", "tensor")


def mesh_section() -> ml_collections.ConfigDict:
    # Device mesh: sizes of the named axes; one may be -1 (all remaining devices).
    c = ml_collections.ConfigDict()
    c.data = 1
    c.fsdp = -1
    c.tensor = 1
    # Logical axis -> comma-separated mesh axes ("" = replicated). The one sharding table.
    c.rules = r = ml_collections.ConfigDict()
    r.batch = "data,fsdp"
    r.length = ""
    r.embed = "fsdp"
    r.vocab = "tensor"
    r.heads = "tensor"
    r.kv_heads = "tensor"
    r.head_dim = ""
    r.mlp = "tensor"
    r.norm = ""
    return c


def check_mesh(config) -> None:
    sizes = [config.mesh[a] for a in MESH_AXES]
    require(
        all(s == -1 or s > 0 for s in sizes), f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}"
    )
    require(sizes.count(-1) <= 1, f"at most one mesh size may be -1, got {dict(zip(MESH_AXES, sizes))}")
    for logical, axes in config.mesh.rules.items():
        for axis in filter(None, (a.strip() for a in axes.split(","))):
            require(
                axis in MESH_AXES,
                f"mesh.rules.{logical} names unknown mesh axis '{axis}' (valid: {', '.join(MESH_AXES)})",
            )


def distributed_section() -> ml_collections.ConfigDict:
    # Multi-process start-up. "auto": initialise when launched by a cluster (TPU pod, SLURM)
    # or when num_processes > 1; "off": never.
    c = ml_collections.ConfigDict()
    c.mode = "auto"
    c.coordinator_address = ""
    c.num_processes = 0  # 0: let JAX detect
    c.process_id = -1  # -1: let JAX detect
    return c


def check_distributed(config) -> None:
    require(
        config.distributed.mode in ("auto", "off"),
        f"distributed.mode must be 'auto' or 'off', got {config.distributed.mode!r}",
    )
