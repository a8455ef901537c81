"""Tokenised SFT examples and a resumable, seeded, per-process batch iterator."""

from __future__ import annotations

import dataclasses

import numpy as np

from t1jax.data.tokenizer import Tokenizer


@dataclasses.dataclass
class EncodedExamples:
    tokens: np.ndarray  # int32 [N, seq_len + 1]: bos, prompt, response, eos, padding
    loss_mask: np.ndarray  # int32 [N, seq_len + 1]: 1 on response tokens (and eos)
    num_truncated: int  # examples cut at seq_len + 1 tokens (their eos is lost)


def encode_examples(
    examples: list[dict],
    tokenizer: Tokenizer,
    seq_len: int,
    prompt_field: str = "prompt",
    response_field: str = "response",
) -> EncodedExamples:
    width = seq_len + 1
    tokens = np.full((len(examples), width), tokenizer.pad_id, np.int32)
    mask = np.zeros((len(examples), width), np.int32)
    truncated = 0
    for row, example in enumerate(examples):
        # Encoded separately so that no BPE merge crosses the prompt/response boundary.
        prompt = [tokenizer.bos_id] + tokenizer.encode(example[prompt_field])
        response = tokenizer.encode(example[response_field]) + [tokenizer.eos_id]
        ids = (prompt + response)[:width]
        truncated += len(prompt) + len(response) > width
        tokens[row, : len(ids)] = ids
        mask[row, len(prompt) : len(ids)] = 1
    return EncodedExamples(tokens, mask, truncated)


class BatchIterator:
    """Endless batches over shuffled examples; each epoch has its own seeded order.

    The state {"epoch", "position"} is saved with checkpoints: a resumed run sees exactly
    the batches it would have seen. With several processes, every process draws the same
    global batch and keeps its own contiguous slice of rows.
    """

    def __init__(
        self, data: EncodedExamples, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1
    ):
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} must be divisible by {process_count} processes")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rows_per_process = batch_size // process_count
        self.process_index = process_index
        self.epoch, self.position = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.data.tokens))

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        picked = []
        while len(picked) < self.batch_size:
            order = self._order(self.epoch)
            take = order[self.position : self.position + self.batch_size - len(picked)]
            picked.extend(take)
            self.position += len(take)
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
        start = self.process_index * self.rows_per_process
        rows = np.asarray(picked[start : start + self.rows_per_process])
        return {"tokens": self.data.tokens[rows], "loss_mask": self.data.loss_mask[rows]}

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def set_state(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def fixed_batches(data: EncodedExamples, batch_size: int) -> list[dict]:
    """The examples in order, in full batches (the last one padded with masked rows)."""
    n = len(data.tokens)
    batches = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        keep = (np.arange(start, start + batch_size) < n)[:, None]
        batches.append({"tokens": data.tokens[rows], "loss_mask": data.loss_mask[rows] * keep})
    return batches
