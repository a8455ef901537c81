"""SFT throughput with and without packing, on the demo's traces and model.

Measures, in one run: examples and response tokens trained per second by the SFT loop (the
Grain batch stream and the jitted step, as `t1jax sft` runs them) with one example per row and
with examples packed into rows, plus how full the rows are. The ratio is what packing saves;
the step count to reach a validation loss is measured by the demo itself (docs/results/).

Run:  python benchmarks/sft_packing.py [--steps 30 --warmup 3 --rows 32,24 --unpacked-rows 32]
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import jax
import numpy as np
from common import machine_info  # noqa: I001 (benchmarks/ is the script directory)

from t1jax import parallel
from t1jax.apps.demo.config import demo_config
from t1jax.config import with_overrides
from t1jax.data.sft_batches import batch_stream, encode_examples
from t1jax.train.optimizer import learning_rate_schedule
from t1jax.train.sft import load_examples, sft_tokenizer
from t1jax.train.sft_step import make_sft_step
from t1jax.train.state import layout_from_config


def measure(config, data, pad_id: int, rows: int, pack: bool, steps: int, warmup: int) -> dict:
    layout = layout_from_config(config, steps + warmup)
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    step = make_sft_step(layout, learning_rate_schedule(config.optim, steps + warmup), 1)
    state = layout.init(0)
    batches = iter(batch_stream(data, rows, seed=0, pack=pack))
    examples = response_tokens = used = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            jax.block_until_ready(state)
            start = time.perf_counter()
        batch = next(batches)
        state, metrics = step(state, parallel.to_global(batch, batch_sh))
        if i >= warmup:
            examples += float(metrics["examples"])
            response_tokens += float(metrics["response_tokens"])
            used += float(np.mean(batch["segment_ids"] > 0) if pack else np.mean(batch["tokens"] != pad_id))
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "pack": pack,
        "examples_per_step": examples / steps,
        "row_fill": used / steps,
        "seconds_per_step": seconds / steps,
        "examples_per_s": examples / seconds,
        "response_tokens_per_s": response_tokens / seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", default="32,24", help="rows per packed batch to measure")
    parser.add_argument("--unpacked-rows", type=int, default=32, help="rows of the one-example-per-row baseline")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        config = with_overrides(demo_config(), {"run.workdir": workdir})
        train, validation, _ = load_examples(config, config.run.seed)
        tokenizer = sft_tokenizer(config, train + validation, pathlib.Path(workdir))
    data = encode_examples(train, tokenizer, config.sft.seq_len)
    runs = [measure(config, data, tokenizer.pad_id, args.unpacked_rows, False, args.steps, args.warmup)]
    for rows in (int(r) for r in args.rows.split(",")):
        runs.append(measure(config, data, tokenizer.pad_id, rows, True, args.steps, args.warmup))
    base = runs[0]["examples_per_s"]
    for run in runs:
        run["examples_per_s_vs_unpacked"] = run["examples_per_s"] / base
    print(json.dumps({"machine": machine_info(), "seq_len": config.sft.seq_len, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
