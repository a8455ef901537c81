"""`t1jax plan --topology T`: whether a config fits a TPU slice, checked before renting one.

Compiles ahead of time, for the topology's devices (plan_programs: the SFT step, the RL update
and one sampler decode step at the config's shapes), and reports per program and per chip:
XLA's memory analysis (arguments, outputs, temporaries; what the run holds outside the program
meanwhile) against the chip's HBM, the FLOPs of XLA's cost analysis, the step time they imply at
a given MFU (and, for memory-bound steps, at the chip's HBM bandwidth), the compile time, and for
a program that does not fit, by how much and the knobs that shrink it.
"""

from __future__ import annotations

import sys
import time

import jax

from t1jax.apps.plan_programs import PROGRAMS, Program, target_mesh
from t1jax.apps.topology import GIB, Target, make_target
from t1jax.config import ModelConfig
from t1jax.errors import ConfigError
from t1jax.model.attention_kernels import compiling_for


def run_plan(
    config, topology: str, mfu: float = 0.4, hbm_gib: float | None = None, programs: str = ",".join(PROGRAMS)
) -> dict:
    """The plan of `config` on `topology` (see topology.parse_topology) as a JSON-able dict, for
    the comma-separated `programs` (default: all of plan_programs.PROGRAMS)."""
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu must be in (0, 1], got {mfu}")
    names = [n.strip() for n in programs.split(",") if n.strip()]
    if not names or any(n not in PROGRAMS for n in names):
        raise ConfigError(f"--programs must name some of {', '.join(PROGRAMS)}, got {programs!r}")
    target = make_target(topology, hbm_gib)
    mesh = target_mesh(config.mesh, target.devices)
    chip = target.chip
    report = {
        "topology": target.name,
        "chips": target.num_chips,
        "device_kind": target.devices[0].device_kind,
        "compiled_by": "XLA:TPU (libtpu)" if chip else "XLA:CPU: an estimate of the SPMD program's memory",
        "hbm_bytes_per_chip": target.hbm_bytes,
        "peak_flops_per_chip": chip.peak_flops if chip else None,
        "hbm_bandwidth_per_chip": chip.hbm_bandwidth if chip else None,
        "mfu": mfu,
        "mesh": dict(mesh.shape),
        "model_params": config_params(config),
        "programs": [analyse(PROGRAMS[name](config, mesh), target, mfu, config) for name in names],
    }
    report["fits"] = all(p["fits"] for p in report["programs"])
    report["rl_step_s"] = _rl_step_time(config, report["programs"])
    return report


def config_params(config) -> int:
    return ModelConfig.from_config(config.model).num_params()


def compile_program(program: Program, target: Target):
    """(compiled, seconds to trace, lower and compile); a program XLA rejects is a ConfigError."""
    start = time.perf_counter()
    mesh = jax.tree.leaves(program.args)[0].sharding.mesh
    try:
        # traced under the target's mesh and platform: a Pallas kernel (model.attention=splash)
        # then compiles for the target's chips, split over its mesh
        with jax.set_mesh(mesh), compiling_for("tpu" if target.chip else "cpu"):
            compiled = program.jitted.lower(*program.args).compile(target.compiler_options or None)
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{program.name} does not compile for {target.name}: {first}") from None
    return compiled, time.perf_counter() - start


def memory(compiled, resident_bytes: int) -> dict:
    """Per device: XLA's memory analysis, what the program holds at once (its arguments, its
    outputs less those written into donated arguments, temporaries and its code) and that plus
    what the run holds outside it."""
    m = compiled.memory_analysis()
    out = {
        "arguments_bytes": m.argument_size_in_bytes,
        "outputs_bytes": m.output_size_in_bytes,
        "aliased_bytes": m.alias_size_in_bytes,
        "temporaries_bytes": m.temp_size_in_bytes,
        "code_bytes": m.generated_code_size_in_bytes,
    }
    out["program_bytes"] = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
        + m.generated_code_size_in_bytes
    )
    out["resident_bytes"] = resident_bytes
    out["total_bytes"] = out["program_bytes"] + resident_bytes
    return out


def analyse(program: Program, target: Target, mfu: float, config) -> dict:
    compiled, seconds = compile_program(program, target)
    mem = memory(compiled, program.resident_bytes)
    print(
        f"t1jax plan: {program.name} compiled in {seconds:.1f} s: {_gib(mem['total_bytes'])} GiB per chip "
        f"of {_gib(target.hbm_bytes)}",
        file=sys.stderr,
        flush=True,
    )
    cost = compiled.cost_analysis() or {}
    chip, n = target.chip, target.num_chips
    # XLA's cost analysis is per device and counts a while_loop's body once: scale by the
    # micro-batch loop's trips (the optimizer update, counted that many times, is < 0.1% of it)
    xla_flops = float(cost.get("flops", 0.0)) * program.loop_trips
    model_flops = program.model_flops / n
    # fewer than the model's own FLOPs: loops inside the step (scanned layers) counted once
    basis = "xla" if xla_flops >= 0.5 * model_flops else "model"
    flops = xla_flops if basis == "xla" else model_flops
    accessed = float(cost.get("bytes accessed", 0.0)) * program.loop_trips
    over = mem["total_bytes"] - target.hbm_bytes
    result = {
        "name": program.name,
        "shape": program.shape,
        "compile_s": round(seconds, 1),
        **mem,
        "resident": program.resident,
        "kv_cache_bytes": program.kv_cache_bytes,
        "fits": over <= 0,
        "over_bytes": max(over, 0),
        "flops_per_chip": xla_flops,
        "model_flops_per_chip": model_flops,
        "flops_basis": basis,
        "bytes_accessed_per_chip": accessed,
        "time_at_mfu_s": flops / (chip.peak_flops * mfu) if chip else None,
        "time_hbm_bound_s": accessed / chip.hbm_bandwidth if chip else None,
    }
    result["advice"] = [] if result["fits"] else advice(program, mem, config, target)
    return result


def advice(program: Program, mem: dict, config, target: Target) -> list[str]:
    """The knobs that shrink what does not fit: those of the activations (temporaries) and those
    of the state (arguments and what stays resident), the larger part first, and the smaller
    only if it is at least a quarter of the excess."""
    m, mesh = config.model, config.mesh
    over = mem["total_bytes"] - target.hbm_bytes
    tensor = 2 * mesh.tensor
    more_tensor = m.num_heads % tensor == 0 and m.num_kv_heads % tensor == 0
    if program.name == "decode_step":
        # The cache is split over every chip already (rows over data x fsdp, kv heads over
        # tensor): another mesh shape on the same slice leaves its share per chip unchanged.
        tips = [
            "fewer rows per sampler call: a smaller rl.prompts_per_step or rl.sampling.num_samples",
            "shorter responses: rl.sampling.max_new_tokens",
            "a slice with more chips: the cache is split over all of them",
        ]
        if m.compute_dtype == "float32":
            tips.append("a bf16 cache: model.compute_dtype=bfloat16")
        return tips
    activation_tips = []
    if program.micro_rows > 1:
        accum, rows = program.loop_trips * 2, program.micro_rows // 2
        rows_text = f"{rows} row{'s' * (rows > 1)} per batch shard"
        activation_tips.append(f"smaller micro-batches: {program.accum_key}={accum} ({rows_text})")
    if "remat" in m:
        activation_tips.append("rematerialise the layers: model.remat")
    if more_tensor:
        activation_tips.append(f"mesh.tensor={tensor} (now {mesh.tensor}): splits heads and MLP over more chips")
    activation_tips.append(f"shorter rows: {program.length_key}")
    state_tips = [f"more fsdp: a slice with more chips (mesh.fsdp={mesh.fsdp} shards the state over its devices)"]
    if mesh.data != 1:
        state_tips.append(f"mesh.data=1 (now {mesh.data}): its devices then shard the state over fsdp")
    if m.param_dtype == "float32":
        state_tips.append("bf16 parameters and optimizer state: model.param_dtype=bfloat16")
    parts = [
        (mem["temporaries_bytes"], activation_tips),
        (mem["arguments_bytes"] + mem["resident_bytes"], state_tips),
    ]
    parts.sort(key=lambda part: -part[0])
    return parts[0][1] + (parts[1][1] if parts[1][0] >= over / 4 else [])


def _rl_step_time(config, programs: list[dict]) -> float | None:
    """Seconds of one RL step's updates and decoding at most (every response at max_new_tokens,
    each decode step at the full cache): the sum the MFU and bandwidth bounds give."""
    times = {p["name"]: _step_time(p) for p in programs}
    if None in times.values() or not {"rl_update", "decode_step"} <= times.keys():
        return None
    r = config.rl
    updates = r.num_passes * r.minibatches
    return updates * times["rl_update"] + r.sampling.max_new_tokens * times["decode_step"]


def _step_time(program: dict) -> float | None:
    if program["time_at_mfu_s"] is None:
        return None
    return max(program["time_at_mfu_s"], program["time_hbm_bound_s"])


def _gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def format_table(report: dict) -> str:
    """The report as a table for the terminal."""
    peak = report["peak_flops_per_chip"]
    hbm = _gib(report["hbm_bytes_per_chip"])
    chip = f"{hbm} GiB HBM, {peak / 1e12:.0f} TFLOP/s bf16" if peak else f"{hbm} GiB of the host's memory each"
    mesh = " ".join(f"{k}={v}" for k, v in report["mesh"].items())
    mfu = f"{report['mfu']:.0%}"
    lines = [
        f"{report['topology']}: {report['chips']} x {report['device_kind']} ({chip}); mesh {mesh}; "
        f"{report['model_params'] / 1e9:.2f}B params; compiled by {report['compiled_by']}",
        f"{'program':<12} {'args':>8} {'out':>8} {'temp':>8} {'resident':>8} {'total':>8} {'free':>8}  "
        f"{'fits':<4} {'TFLOP':>9} {'t@' + mfu:>9} {'t@HBM BW':>9} {'compile':>8}",
        f"{'':<12} {'GiB per chip':^53}  {'':<4} {'per chip':>9} {'s':>9} {'s':>9} {'s':>8}",
    ]
    for p in report["programs"]:
        new_out = p["outputs_bytes"] - p["aliased_bytes"]
        free = report["hbm_bytes_per_chip"] - p["total_bytes"]
        times = [f"{t:9.3g}" if t is not None else f"{'-':>9}" for t in (p["time_at_mfu_s"], p["time_hbm_bound_s"])]
        lines.append(
            f"{p['name']:<12} {_gib(p['arguments_bytes']):>8} {_gib(new_out):>8} {_gib(p['temporaries_bytes']):>8} "
            f"{_gib(p['resident_bytes']):>8} {_gib(p['total_bytes']):>8} {_gib(free):>8}  "
            f"{'yes' if p['fits'] else 'NO':<4} {p['flops_per_chip'] / 1e12:9.4g} {times[0]} {times[1]} "
            f"{p['compile_s']:8.1f}"
        )
    lines.append("")
    for p in report["programs"]:
        resident = f"; resident: {p['resident']}" if p["resident"] else ""
        if p["kv_cache_bytes"]:
            resident += f"; KV cache {_gib(p['kv_cache_bytes'])} GiB per chip (in args)"
        basis = "" if p["flops_basis"] == "xla" else "; time from the model's FLOPs (XLA counts loop bodies once)"
        lines.append(f"{p['name']}: {p['shape']}{resident}{basis}")
    for p in report["programs"]:
        if not p["fits"]:
            knobs = "; or ".join(p["advice"])
            lines.append(f"{p['name']} does not fit: {_gib(p['over_bytes'])} GiB over; turn: {knobs}")
    if report["rl_step_s"] is not None:
        lines.append(f"RL step (updates and decoding, at most): {report['rl_step_s']:.3g} s")
    return "\n".join(lines)
