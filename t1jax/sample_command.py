"""`t1jax sample`: continuations of prompts from the latest checkpoint of a run."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import CheckpointError
from t1jax.sampling.from_config import sampler_from_config
from t1jax.train.checkpoint import Checkpointer
from t1jax.train.state import layout_from_config


def load_run(config):
    """(tokenizer, params, layout) of the run in config.run.workdir (latest checkpoint)."""
    workdir = pathlib.Path(config.run.workdir)
    tokenizer = Tokenizer.load(config.sft.tokenizer_path or str(workdir / "tokenizer.model"))
    layout = layout_from_config(config, config.sft.num_steps)
    with Checkpointer(str(workdir / "checkpoints"), create=False) as checkpointer:
        params = checkpointer.restore_params(layout.abstract_state().params)
    if params is None:
        raise CheckpointError(f"no checkpoint in {workdir / 'checkpoints'}; train first (t1jax sft)")
    return tokenizer, params, layout


def run_sample(config, prompts: list[str], num_samples: int | None = None) -> list[dict]:
    tokenizer, params, layout = load_run(config)
    sampler = sampler_from_config(config, (tokenizer.eos_id,), tokenizer.pad_id, layout, num_samples)
    encoded = [tokenizer.encode_prompt(p) for p in prompts]
    out = sampler(params, encoded, jax.random.key(config.sampling.seed))
    results = []
    for row in range(len(out.tokens)):
        n = int(out.lengths[row])
        ids = [t for t in out.tokens[row, :n].tolist() if t != tokenizer.eos_id]
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
