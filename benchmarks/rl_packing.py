"""The RL update with and without packing (rl.pack), at the demo's shapes.

Measures, in one run, the update part of an RL step as `t1jax rl` runs it (build the batch,
score it under the anchor, shape the advantages, one optimizer step) on batches of P = 8 prompts
x K = 16 samples. The samples are the demo's SFT traces: each group takes the prompt of one trace
and the responses of K traces (cut at the demo's 128 new tokens), so the lengths are those of
the traces the SFT model learns to write. Sampling is not measured (it does not change).

Every batch is run once to compile its shapes, then the same batches are timed; the packed
update compiles once per distinct row count, reported as `row_counts`. Each run uses the default
automatic micro-batches (rl.grad_accum_steps = 0: on a CPU, ~2k tokens per device each); one
more packed run takes each batch whole (rl.grad_accum_steps = 1) for comparison.

Run:  python benchmarks/rl_packing.py [--batches 10]
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

from t1jax.apps.demo.config import demo_config
from t1jax.config import with_overrides
from t1jax.data.sft_batches import encode_examples
from t1jax.train.objectives import kl_normalized_rewards, rloo_advantages
from t1jax.train.rl.batch import pack, row_length, sequence_kl, token_advantages
from t1jax.train.rl.loop import RLRun
from t1jax.train.rl.rollout import RolloutGroups
from t1jax.train.rl.update import update_policy
from t1jax.train.sft import load_examples, sft_tokenizer


def trace_groups(data, P: int, K: int, M: int, batches: int) -> list[RolloutGroups]:
    """Groups of P prompts x K responses taken from consecutive traces."""
    rng = np.random.default_rng(0)
    out = []
    for b in range(batches):
        prompts, tokens, lengths = [], np.zeros((P, K, M), np.int32), np.zeros((P, K), np.int64)
        for p in range(P):
            first = (b * P + p) * K
            prompt_end = int(np.argmax(data.loss_mask[first]))
            prompts.append(data.tokens[first, :prompt_end].tolist())
            for k in range(K):
                response = data.tokens[first + k][data.loss_mask[first + k] > 0][:M]
                tokens[p, k, : len(response)], lengths[p, k] = response, len(response)
        flags = np.zeros((P, K), bool)
        logprobs = np.where(np.arange(M) < lengths[..., None], -rng.uniform(0.1, 3.0, (P, K, M)), 0)
        out.append(
            RolloutGroups(
                prompts,
                tokens,
                lengths,
                logprobs.astype(np.float32),
                correct=rng.random((P, K)) < 0.4,
                reward=rng.choice([-1.0, 1.0], (P, K)).astype(np.float32),
                truncated=flags,
                repetitive=flags,
                garbage=flags,
            )
        )
    return out


def update(run: RLRun, state, anchor, groups: RolloutGroups):
    """The update half of rl_step (pack -> anchor log-probs -> KL-normalised RLOO -> update):
    (state, the update's metrics, the batch's row count and fill)."""
    r = run.config.rl
    batch = pack(groups, run.tokenizer.pad_id, r, run.row_multiple)
    batch["ref_logp"] = run.anchor_logprobs(anchor, batch)
    kl = sequence_kl(groups, batch, batch["ref_logp"], r.kl_estimator)
    batch["advantage"] = token_advantages(batch, rloo_advantages(kl_normalized_rewards(groups.reward, kl, r.kl_beta)))
    state, metrics = update_policy(run.update_step, state, batch, r)
    stats = {"update_rows": len(batch["tokens"]), "update_row_fill": float(np.mean(batch["segment_ids"] > 0))}
    return state, metrics, stats


def measure(config, groups: list[RolloutGroups]) -> dict:
    run = RLRun(config)
    state, anchor, _ = run.initial_state()
    row_counts, fill = set(), []
    for g in groups:  # compile every shape
        state, metrics, stats = update(run, state, anchor, g)
        jax.block_until_ready(metrics)
        row_counts.add(stats["update_rows"])
        fill.append(stats["update_row_fill"])
    start = time.perf_counter()
    for g in groups:
        state, metrics, _ = update(run, state, anchor, g)
        jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / len(groups)
    run.checkpointer.close()
    return {
        "pack": bool(config.rl.pack),
        "pack_factor": config.rl.pack_factor if config.rl.pack else None,
        "grad_accum_steps": config.rl.grad_accum_steps,
        "rows": sorted(row_counts),
        "row_len": sorted({row_length(g) * (config.rl.pack_factor if config.rl.pack else 1) for g in groups}),
        "row_fill": float(np.mean(fill)),
        "seconds_per_update": seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--pack-factors", default="1,2", help="rl.pack_factor values to measure")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        config = with_overrides(demo_config(), {"run.workdir": workdir, "run.progress": False})
        train, validation, _ = load_examples(config, config.run.seed)
        tokenizer = sft_tokenizer(config, train + validation, pathlib.Path(workdir))
        data = encode_examples(train, tokenizer, config.sft.seq_len)
        r = config.rl
        groups = trace_groups(data, r.prompts_per_step, r.sampling.num_samples, r.sampling.max_new_tokens, args.batches)
        runs = []
        factors = [(0, 0)] + [(int(f), 0) for f in args.pack_factors.split(",")] + [(1, 1)]
        for factor, grad_accum in factors:
            overrides = {
                "rl.pack_factor": max(factor, 1),
                "rl.pack": factor > 0,
                "rl.grad_accum_steps": grad_accum,
                "run.workdir": f"{workdir}/{len(runs)}",
                "sft.tokenizer_path": f"{workdir}/tokenizer.model",
            }
            runs.append(measure(with_overrides(config, overrides), groups))
    for run in runs:
        run["speedup_vs_unpacked"] = runs[0]["seconds_per_update"] / run["seconds_per_update"]
    result = {
        "machine": machine_info(),
        "prompts_x_samples": [r.prompts_per_step, r.sampling.num_samples],
        "mean_response_tokens": float(np.mean([g.lengths.mean() for g in groups])),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
