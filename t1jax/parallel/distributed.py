"""Multi-process start-up (TPU pod slices, multi-host GPU, or several local processes)."""

from __future__ import annotations

import os

import jax


def initialize(distributed_config) -> bool:
    """Calls jax.distributed.initialize when the run spans several processes.

    Must run before anything touches a device. Returns whether it initialised. On a TPU pod
    slice JAX finds the coordinator itself; elsewhere set distributed.coordinator_address,
    num_processes and process_id.
    """
    cfg = distributed_config
    if cfg.mode == "off" or jax.distributed.is_initialized():
        return False
    explicit = cfg.num_processes > 1 or bool(cfg.coordinator_address)
    if not (explicit or launched_on_several_hosts()):
        return False
    jax.distributed.initialize(
        coordinator_address=cfg.coordinator_address or None,
        num_processes=cfg.num_processes or None,
        process_id=None if cfg.process_id < 0 else cfg.process_id,
    )
    return True


def launched_on_several_hosts() -> bool:
    """Whether a cluster launcher started this process as one of several (TPU pod, SLURM, MPI)."""
    tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return (
        "," in tpu_hosts
        or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    )
