"""The device mesh, built from the config's axis sizes."""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

from t1jax.config import MESH_AXES
from t1jax.errors import ConfigError


def resolve_mesh_shape(mesh_config, num_devices: int) -> tuple[int, ...]:
    """Axis sizes with the one -1 (if any) replaced by the devices left over."""
    sizes = [mesh_config[a] for a in MESH_AXES]
    named = dict(zip(MESH_AXES, sizes))
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(
                f"mesh {named}: the fixed sizes multiply to {known}, which does not "
                f"divide the {num_devices} available devices"
            )
        sizes[sizes.index(-1)] = num_devices // known
    elif known != num_devices:
        raise ConfigError(
            f"mesh {named} needs {known} devices but {num_devices} are available; set one size to -1 to use all of them"
        )
    return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> Mesh:
    """A mesh over `devices` (default: all) with axes (data, fsdp, tensor).

    Axis types are Auto: shardings are given explicitly through jit's in/out_shardings and
    XLA propagates the rest (jax.make_mesh would default to Explicit axes).
    """
    devices = jax.devices() if devices is None else list(devices)
    shape = resolve_mesh_shape(mesh_config, len(devices))
    # mesh_utils orders devices so that inner axes use the fastest interconnect on TPU.
    if len(devices) == len(jax.devices()):
        device_array = mesh_utils.create_device_mesh(shape, devices)
    else:
        device_array = np.asarray(devices).reshape(shape)
    return Mesh(device_array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
