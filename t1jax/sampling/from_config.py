"""Building a Sampler from the `sampling` section of a config."""

from __future__ import annotations

from t1jax.model import ModelConfig
from t1jax.sampling.sampler import Sampler
from t1jax.sampling.strategies import Greedy, Sample, Strategy


def strategy_from_config(sampling_config) -> Strategy:
    s = sampling_config
    if s.temperature == 0:
        return Greedy()
    return Sample(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p)


def sampler_from_config(
    config, stop_ids: tuple[int, ...], pad_id: int, layout=None, num_samples: int | None = None
) -> Sampler:
    s = config.sampling
    return Sampler(
        ModelConfig.from_config(config.model),
        strategy_from_config(s),
        s.max_new_tokens,
        num_samples or s.num_samples,
        stop_ids,
        pad_id,
        s.max_prompt_len,
        layout,
        s.stage_tokens,
    )
