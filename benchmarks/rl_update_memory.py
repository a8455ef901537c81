"""Memory of one RL update step at a real vocabulary, with and without chunked logits.

Compiles the jitted update step (t1jax.train.rl.update.make_update_step, as `t1jax rl` runs it)
ahead of time for a small model with a large vocabulary (default: Gemma's 262,144) on one
device, for each value of optim.logits_chunk_tokens, and reports XLA's memory analysis of the
compiled program: arguments (state and batch), outputs, and temporaries (activations, logits
and their gradients). Nothing is run, so the unchunked program need not fit in memory; with
--run the chunked programs also run once (constant tokens), timed, and the process's peak resident
memory is reported.

Run:  python benchmarks/rl_update_memory.py [--vocab 262144 --d-model 256 --layers 2 --rows 4
      --length 1024 --chunks 0,2048,1024,512] [--run]
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import jax
import jax.numpy as jnp
from common import machine_info  # noqa: I001 (benchmarks/ is the script directory)

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.train.rl.update import BATCH_KEYS, make_update_step
from t1jax.train.state import layout_from_config

GIB = 2**30


def abstract_batch(layout, rows: int, length: int) -> dict:
    sharding = parallel.batch_sharding(layout.mesh, layout.rules)
    dtypes = {"tokens": jnp.int32, "positions": jnp.int32, "segment_ids": jnp.int32, "response": jnp.bool_}
    return {k: jax.ShapeDtypeStruct((rows, length), dtypes.get(k, jnp.float32), sharding=sharding) for k in BATCH_KEYS}


def zero_batch(rows: int, length: int) -> dict:
    ones = jnp.ones((rows, length), jnp.int32)
    batch = {k: jnp.zeros((rows, length), jnp.float32) for k in BATCH_KEYS}
    return {
        **batch,
        "tokens": ones,
        "positions": jnp.cumsum(ones, axis=1) - 1,
        "segment_ids": ones,
        "response": ones > 0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=262144)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--chunks", default="0,2048,1024,512", help="optim.logits_chunk_tokens values; 0: unchunked")
    p.add_argument("--run", action="store_true", help="also run each chunked step once")
    args = p.parse_args()

    overrides = {
        "model.vocab_size": args.vocab,
        "model.d_model": args.d_model,
        "model.num_layers": args.layers,
        "model.num_heads": 4,
        "model.num_kv_heads": 2,
        "model.mlp_dim": 3 * args.d_model,
        "mesh.data": 1,
        "mesh.fsdp": 1,
        "mesh.tensor": 1,
    }
    config = config_lib.load(None, overrides)
    layout = layout_from_config(config, 10, devices=jax.devices()[:1])
    state, batch = layout.abstract_state(), abstract_batch(layout, args.rows, args.length)
    results = []
    for chunk_tokens in [int(c) for c in args.chunks.split(",")]:
        step = make_update_step(layout, config.rl, 1, logits_chunk_tokens=chunk_tokens)
        start = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        m = compiled.memory_analysis()
        row = {
            "logits_chunk_tokens": chunk_tokens,
            "compile_s": round(time.perf_counter() - start, 1),
            "argument_bytes": m.argument_size_in_bytes,
            "output_bytes": m.output_size_in_bytes,
            "alias_bytes": m.alias_size_in_bytes,
            "temp_bytes": m.temp_size_in_bytes,
            # what the step holds at once: its inputs, its new outputs (donated inputs reused) and temporaries
            "peak_bytes": m.argument_size_in_bytes
            + m.output_size_in_bytes
            - m.alias_size_in_bytes
            + m.temp_size_in_bytes,
        }
        print(f"chunk {chunk_tokens}: temp {row['temp_bytes'] / GIB:.2f} GiB", file=sys.stderr)
        if args.run and chunk_tokens:
            real_state = layout.init(0)
            start = time.perf_counter()
            _, metrics = compiled(real_state, zero_batch(args.rows, args.length))
            jax.block_until_ready(metrics)
            row["run_s"] = round(time.perf_counter() - start, 1)
            row["loss"] = float(metrics["loss"])
            row["max_rss_bytes_so_far"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            del real_state
        results.append(row)
    unchunked = next((r for r in results if r["logits_chunk_tokens"] == 0), None)
    for row in results:
        if unchunked:
            row["peak_vs_unchunked"] = round(row["peak_bytes"] / unchunked["peak_bytes"], 3)
            row["temp_vs_unchunked"] = round(row["temp_bytes"] / unchunked["temp_bytes"], 3)
        row["peak_gib"] = round(row["peak_bytes"] / GIB, 2)
    shape = {k: getattr(args, k) for k in ("vocab", "d_model", "layers", "rows", "length")}
    full_logits = args.rows * args.length * args.vocab * 4
    print(
        json.dumps(
            {"machine": machine_info(), "shape": shape, "full_logits_bytes": full_logits, "steps": results}, indent=1
        )
    )


if __name__ == "__main__":
    main()
