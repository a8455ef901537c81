"""How many micro-batches a train step splits its batch into: the config's count, or where the
config leaves it to t1jax (sft.grad_accum_steps or rl.grad_accum_steps = 0) an automatic one.

On a CPU, micro-batches of about CPU_MICRO_BATCH_TOKENS tokens per device keep a layer's
activations in the caches, where a whole batch streams them through memory: on 2 cores the demo
model's SFT step at 32 x 256 tokens runs 1.3x faster in 4 micro-batches than in one, and the
update part of its RL step (80-96 rows of 160 tokens, anchor scoring included) 1.15x faster
(benchmarks/train_step.py, benchmarks/rl_packing.py). An accelerator runs the whole batch at once
best, memory permitting."""

from __future__ import annotations

CPU_MICRO_BATCH_TOKENS = 2048


def micro_batch_count(requested: int, mesh, rows_per_shard: int, row_tokens: int) -> int:
    """`requested` where it is set; else, on a mesh of CPU devices, the fewest micro-batches that
    divide rows_per_shard and hold at most CPU_MICRO_BATCH_TOKENS tokens each (one row each where
    none does), and on any other platform 1. The platform is the mesh's, which may be a target
    other than the host (t1jax plan compiles for a TPU topology on a CPU)."""
    if requested:
        return requested
    if mesh.devices.flat[0].platform != "cpu":
        return 1
    rows = max(1, rows_per_shard)
    counts = [a for a in range(1, rows + 1) if rows % a == 0]
    fitting = [a for a in counts if rows // a * row_tokens <= CPU_MICRO_BATCH_TOKENS]
    return fitting[0] if fitting else counts[-1]
