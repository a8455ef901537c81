"""Text in, text out: the seam between evaluation and the model.

Evaluation code only sees a `Generate` callable, so the metrics and the inference-scaling
protocol are tested with deterministic fake models, and the real one is a thin wrapper around
the jitted sampler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from t1jax.data.chat import format_prompt
from t1jax.data.tokenizer import Tokenizer
from t1jax.runtime.progress import Progress
from t1jax.sampling import Sampler


@dataclasses.dataclass(frozen=True)
class Generation:
    text: str  # the continuation, without the stop token
    num_tokens: int  # generated tokens, counting the stop token if there was one
    truncated: bool  # hit the token limit before a stop token


# generate(prompts, num_samples) -> for each prompt, its samples in order.
Generate = Callable[[list[str], int], list[list[Generation]]]
# continue_ids(token_prompts) -> one greedy continuation per prompt (inference scaling).
ContinueIds = Callable[[list[list[int]]], list[Generation]]


class ModelGenerator:
    """Samples from `params` with a Sampler, `chunk` prompts per call (bounds the KV cache)."""

    def __init__(
        self,
        sampler: Sampler,
        tokenizer: Tokenizer,
        params,
        seed: int = 0,
        chunk: int = 64,
        label: str = "",
        prompt_format: str = "plain",
    ):
        self.sampler, self.tokenizer, self.params, self.prompt_format = sampler, tokenizer, params, prompt_format
        self.key, self.chunk, self._calls, self.label = jax.random.key(seed), chunk, 0, label

    def generate_ids(self, prompts: list[list[int]]) -> list[list[Generation]]:
        K, results = self.sampler.num_samples, []
        shown = bool(self.label) and jax.process_index() == 0
        with Progress(len(prompts), self.label, enabled=shown) as progress:
            for start in range(0, len(prompts), self.chunk):
                part = prompts[start : start + self.chunk]
                self._calls += 1
                out = self.sampler(self.params, part, jax.random.fold_in(self.key, self._calls))
                for p in range(len(part)):
                    results.append([self._generation(out, p * K + k) for k in range(K)])
                progress.update(len(results))
        return results

    def __call__(self, prompts: list[str], num_samples: int) -> list[list[Generation]]:
        if num_samples != self.sampler.num_samples:
            raise ValueError(f"this generator samples {self.sampler.num_samples} per prompt, not {num_samples}")
        return self.generate_ids([format_prompt(self.tokenizer, p, self.prompt_format) for p in prompts])

    def continue_ids(self, prompts: list[list[int]]) -> list[Generation]:
        return [samples[0] for samples in self.generate_ids(prompts)]

    def _generation(self, out, row: int) -> Generation:
        n = int(out.lengths[row])
        ids = np.asarray(out.tokens[row, :n]).tolist()
        if out.finished[row]:
            ids = ids[:-1]  # the stop token
        return Generation(self.tokenizer.decode(ids), n, bool(out.truncated[row]))
