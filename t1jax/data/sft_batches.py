"""Tokenised SFT examples and the resumable, seeded, per-process Grain batch stream."""

from __future__ import annotations

import dataclasses

import grain
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
        prompt = tokenizer.encode_prompt(example[prompt_field])
        response = tokenizer.encode_response(example[response_field])
        ids = (prompt + response)[:width]
        truncated += len(prompt) + len(response) > width
        tokens[row, : len(ids)] = ids
        mask[row, len(prompt) : len(ids)] = 1
    return EncodedExamples(tokens, mask, truncated)


def batch_stream(
    data: EncodedExamples, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1
) -> grain.IterDataset:
    """Endless batches of this process's rows, as a Grain dataset.

    The examples are shuffled with `seed`, reshuffled every epoch, and batches run across
    epoch boundaries, so no example is skipped. Process i of n keeps elements i, i+n, ... of
    the global stream: the processes' batches are disjoint and together form the global
    batch. An iterator's get_state()/set_state() (saved with checkpoints) resume it exactly.
    """
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} must be divisible by {process_count} processes")
    tokens, mask = data.tokens, data.loss_mask
    stream = grain.MapDataset.source(range(len(tokens))).seed(seed).shuffle().repeat(None)
    stream = stream[process_index::process_count].map(lambda i: {"tokens": tokens[i], "loss_mask": mask[i]})
    return stream.batch(batch_size // process_count).to_iter_dataset()


def fixed_batches(data: EncodedExamples, batch_size: int) -> list[dict]:
    """The examples in order, in full batches (the last one padded with masked rows)."""
    n = len(data.tokens)
    batches = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        keep = (np.arange(start, start + batch_size) < n)[:, None]
        batches.append({"tokens": data.tokens[rows], "loss_mask": data.loss_mask[rows] * keep})
    return batches
