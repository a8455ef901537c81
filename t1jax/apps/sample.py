"""`t1jax sample`: continuations of prompts from the latest checkpoint of a run."""

from __future__ import annotations

import jax
import numpy as np

from t1jax.data.chat import format_prompt, stop_ids
from t1jax.runtime.run_dir import load_run, run_layout
from t1jax.sampling import Sampler, strategy_for


def run_sample(config, prompts: list[str], num_samples: int | None = None) -> list[dict]:
    """`num_samples` (default sampling.num_samples) continuations of each prompt from the run in
    run.workdir, with the `sampling` section's strategy."""
    s = config.sampling
    layout = run_layout(config.run.workdir, config)
    _, params, tokenizer = load_run(config.run.workdir, config=config, layout=layout, key="run.workdir")
    fmt = config.data.prompt_format
    stops = stop_ids(tokenizer, fmt)
    sampler = Sampler(
        layout.model_config, strategy_for(s), s.max_new_tokens, num_samples or s.num_samples, stops,
        tokenizer.pad_id, s.max_prompt_len, layout, s.stage_tokens,
    )  # fmt: skip
    encoded = [format_prompt(tokenizer, p, fmt) for p in prompts]
    out = sampler(params, encoded, jax.random.key(s.seed))
    results = []
    for row in range(len(out.tokens)):
        n = int(out.lengths[row])
        ids = [t for t in out.tokens[row, :n].tolist() if t not in stops]
        results.append(
            {
                "prompt": prompts[row // sampler.num_samples],
                "sample": row % sampler.num_samples,
                "text": tokenizer.decode(ids),
                "tokens": n,
                "finished": bool(out.finished[row]),
                "mean_logprob": float(np.mean(out.logprobs[row, :n])),
            }
        )
    return results
