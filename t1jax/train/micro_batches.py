"""How many micro-batches a train step splits its batch into where the config leaves the count
to t1jax (sft.grad_accum_steps or rl.grad_accum_steps = 0).

On a CPU, micro-batches of about CPU_MICRO_BATCH_TOKENS tokens per device keep a layer's
activations in the caches, where a whole batch streams them through memory: on 2 cores the demo
model's SFT step at 32 x 256 tokens runs 1.3x faster in 4 micro-batches than in one, and the
update part of its RL step (80-96 rows of 160 tokens, anchor scoring included) 1.15x faster
(benchmarks/train_step.py, benchmarks/rl_packing.py). An accelerator runs the whole batch at once
best, memory permitting."""

from __future__ import annotations

CPU_MICRO_BATCH_TOKENS = 2048


def automatic_micro_batches(platform: str, rows_per_shard: int, row_tokens: int, must_divide: bool) -> int:
    """On a CPU the fewest micro-batches whose rows (rows_per_shard split as evenly as possible)
    hold at most CPU_MICRO_BATCH_TOKENS tokens, or one row each where no count does; elsewhere 1.
    must_divide: only counts that divide rows_per_shard (a batch whose rows are not padded to
    the count)."""
    rows = max(1, rows_per_shard)
    if platform != "cpu":
        return 1
    counts = [a for a in range(1, rows + 1) if not must_divide or rows % a == 0]
    fitting = [a for a in counts if -(-rows // a) * row_tokens <= CPU_MICRO_BATCH_TOKENS]
    return fitting[0] if fitting else counts[-1]


def mesh_platform(mesh) -> str:
    """The platform of a mesh's devices ("cpu", "tpu", "gpu"), which may be a target other than
    the host's (t1jax plan compiles for a TPU topology on a CPU)."""
    return mesh.devices.flat[0].platform
