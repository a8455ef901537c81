"""What `t1jax plan` compiles for: the chips of a TPU generation, and the devices of a topology
named on the command line.

A TPU topology ("v5p:2x2x1", or a slice name such as "v5p-8") becomes libtpu's compile-only
devices (jax.experimental.topologies): XLA's TPU compiler then compiles for that slice on a host
without a TPU. "cpu:N" compiles for N simulated CPU devices instead: an estimate of the same SPMD
program's per-device memory, for hosts without libtpu (the tests use it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import jax

from t1jax.errors import ConfigError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One chip of a TPU generation (Cloud TPU's published peak and bandwidth)."""

    generation: str
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bytes: int  # what XLA's TPU compiler lets one program use (libtpu's "available HBM")
    hbm_bandwidth: float  # bytes/s
    dims: int  # 3: a 3D torus (v4, v5p); 2: a 2D one (v5e, v6e)
    cores_in_slice_name: int  # "v5p-8" counts TensorCores (2 per chip); "v6e-8" counts chips
    megacore: bool  # the chip's two TensorCores are one JAX device


CHIPS = {
    "v4": Chip("v4", 275e12, int(30.75 * GIB), 1200e9, 3, 2, True),
    "v5e": Chip("v5e", 197e12, int(15.75 * GIB), 819e9, 2, 1, False),
    "v5p": Chip("v5p", 459e12, int(95.74 * GIB), 2765e9, 3, 2, True),
    "v6e": Chip("v6e", 918e12, int(31.25 * GIB), 1640e9, 2, 1, False),
}
ALIASES = {"v5litepod": "v5e"}  # Cloud TPU's accelerator-type name of v5e
# The topology of a slice name's chip count (Cloud TPU's default shapes).
SHAPES = {
    3: {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8", 512: "8x8x8"},
    2: {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"},
}
FORMS = "GEN:AxBxC (v5p:2x2x1), a slice name (v5p-8, v6e-16) or cpu:N"


@dataclasses.dataclass(frozen=True)
class Target:
    """The devices a plan compiles for. chip is None for simulated CPU devices, whose capacity is
    the host's memory divided among them."""

    name: str  # canonical: "v5p:2x2x1" or "cpu:8"
    devices: tuple
    chip: Chip | None
    hbm_bytes: int

    @property
    def num_chips(self) -> int:
        return len(self.devices)

    @property
    def compiler_options(self) -> dict:
        # a program over the chip's HBM still compiles, so its memory analysis says by how much
        return {"xla_tpu_no_crash_on_oom": True} if self.chip else {}


def parse_topology(text: str) -> tuple[str, tuple[int, ...]]:
    """(generation or "cpu", the slice's shape in chips); a ConfigError naming the accepted forms."""
    text = text.strip().lower()
    if m := re.fullmatch(r"cpu:(\d+)", text):
        count = int(m.group(1))
        if count < 1:
            raise ConfigError(f"--topology {text}: needs at least one device")
        return "cpu", (count,)
    if m := re.fullmatch(r"([a-z0-9]+)-(\d+)", text):
        chip = _chip(m.group(1), text)
        chips, rest = divmod(int(m.group(2)), chip.cores_in_slice_name)
        shape = SHAPES[chip.dims].get(chips)
        if rest or shape is None:
            known = ", ".join(f"{chip.generation}-{n * chip.cores_in_slice_name}" for n in SHAPES[chip.dims])
            raise ConfigError(f"--topology {text}: no default shape for this slice (known: {known}); give GEN:AxBxC")
        return chip.generation, tuple(int(d) for d in shape.split("x"))
    if m := re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)*)", text):
        chip = _chip(m.group(1), text)
        shape = tuple(int(d) for d in m.group(2).split("x"))
        if len(shape) != chip.dims or min(shape) < 1:
            raise ConfigError(f"--topology {text}: a {chip.generation} slice has {chip.dims} positive dimensions")
        return chip.generation, shape
    raise ConfigError(f"--topology {text!r} is not a topology: use {FORMS}")


def _chip(generation: str, text: str) -> Chip:
    generation = ALIASES.get(generation, generation)
    if generation not in CHIPS:
        raise ConfigError(f"--topology {text}: unknown TPU generation '{generation}' (known: {', '.join(CHIPS)})")
    return CHIPS[generation]


def make_target(text: str, hbm_gib: float | None = None) -> Target:
    """The devices of topology `text`, with the chip's HBM (or `hbm_gib`, e.g. to keep a reserve)."""
    generation, shape = parse_topology(text)
    if jax.config.jax_platforms is None:  # no real device is used: keep JAX from probing libtpu for one
        jax.config.update("jax_platforms", "cpu")
    if generation == "cpu":
        devices = _cpu_devices(shape[0])
        name, chip, hbm = f"cpu:{shape[0]}", None, _host_memory() // shape[0]
    else:
        chip = CHIPS[generation]
        name = f"{generation}:{'x'.join(map(str, shape))}"
        devices, hbm = _tpu_devices(chip, name, math.prod(shape)), chip.hbm_bytes
    if hbm_gib is not None:
        if hbm_gib <= 0:
            raise ConfigError(f"--hbm_gib must be positive, got {hbm_gib}")
        hbm = int(hbm_gib * GIB)
    return Target(name, tuple(devices), chip, hbm)


def _tpu_devices(chip: Chip, name: str, num_chips: int) -> list:
    from jax.experimental import topologies

    # No chip is opened: the plugin only describes the slice and compiles for it. Without these,
    # libtpu asks the (absent) metadata server, logs that it found no accelerator, and refuses a
    # second process that loads it at the same time.
    for key, value in {
        "TPU_SKIP_MDS_QUERY": "1",
        "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
        "TPU_ACCELERATOR_TYPE": f"{_cloud_name(chip)}-{num_chips * chip.cores_in_slice_name}",
        "TPU_WORKER_HOSTNAMES": "localhost",
    }.items():
        os.environ.setdefault(key, value)
    options = {"chip_config_name": "megacore"} if chip.megacore else {}
    try:
        return list(topologies.get_topology_desc(name, "tpu", **options).devices)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "not installed" in first:
            raise ConfigError(
                f"--topology {name} compiles with libtpu, which is not installed: pip install -e '.[tpu]' "
                "(or plan a CPU-compiled estimate with --topology cpu:N)"
            ) from None
        raise ConfigError(f"--topology {name}: {first}") from None


def _cloud_name(chip: Chip) -> str:
    return next((alias for alias, generation in ALIASES.items() if generation == chip.generation), chip.generation)


def _cpu_devices(count: int) -> list:
    flag = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if count > max(int(flag.group(1)) if flag else 1, jax.config.jax_num_cpu_devices):
        try:  # a fresh process: ask for the devices before JAX starts its CPU backend
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:
            pass  # already started: what it has must do
    devices = jax.devices("cpu")
    if len(devices) < count:
        raise ConfigError(
            f"--topology cpu:{count}: this process has {len(devices)} CPU devices "
            f"(XLA_FLAGS=--xla_force_host_platform_device_count={count} gives more)"
        )
    return devices[:count]


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover - not POSIX
        return 0
