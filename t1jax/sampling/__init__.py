"""Jitted KV-cache sampling with oversampling (K samples per prompt) and per-token logprobs."""

from t1jax.sampling.sampler import Sampler, SamplerOutput, bucket, decode, stage_ends
from t1jax.sampling.strategies import Greedy, Sample, choose, filtered_logits, strategy_for

__all__ = [
    "Greedy",
    "Sample",
    "Sampler",
    "SamplerOutput",
    "bucket",
    "choose",
    "decode",
    "filtered_logits",
    "stage_ends",
    "strategy_for",
]
