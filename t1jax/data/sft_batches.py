"""Tokenised SFT examples and the resumable, seeded, per-process Grain batch stream (one
example per row, or several packed into each row)."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from t1jax.data.chat import format_example
from t1jax.data.tokenizer import Tokenizer


@dataclasses.dataclass
class EncodedExamples:
    tokens: np.ndarray  # int32 [N, seq_len + 1]: bos, prompt, response, eos, padding
    loss_mask: np.ndarray  # int32 [N, seq_len + 1]: 1 on response tokens (and eos)
    num_truncated: int  # examples cut at seq_len + 1 tokens (their eos is lost)
    lengths: np.ndarray  # int32 [N]: tokens of each example before the padding


def encode_examples(
    examples: list[dict],
    tokenizer: Tokenizer,
    seq_len: int,
    prompt_field: str = "prompt",
    response_field: str = "response",
    prompt_format: str = "plain",
) -> EncodedExamples:
    """Each example as [prompt | response] ids of at most seq_len + 1 tokens, the loss on the
    response's tokens only (data.chat.format_example, in the run's prompt format)."""
    width = seq_len + 1
    tokens = np.full((len(examples), width), tokenizer.pad_id, np.int32)
    mask = np.zeros((len(examples), width), np.int32)
    lengths = np.zeros(len(examples), np.int32)
    truncated = 0
    for row, example in enumerate(examples):
        ids, loss_mask = format_example(tokenizer, example[prompt_field], example[response_field], prompt_format)
        truncated += len(ids) > width
        ids, loss_mask = ids[:width], loss_mask[:width]
        tokens[row, : len(ids)] = ids
        mask[row, : len(ids)] = loss_mask
        lengths[row] = len(ids)
    return EncodedExamples(tokens, mask, truncated, lengths)


# Open rows the packer fills at once: more fill the rows better (measured on the demo's traces,
# mean 83 of 145 tokens: 16 rows 80% full, 64 rows 83%, 128 rows 84%).
_PACKING_ROWS = 64


def batch_stream(
    data: EncodedExamples,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    pack: bool = False,
) -> grain.IterDataset:
    """Endless batches of `batch_size` rows (this process's share of them), as a Grain dataset.

    The examples are shuffled with `seed`, reshuffled every epoch, and batches run across
    epoch boundaries, so no example is skipped. Process i of n keeps elements i, i+n, ... of
    the global stream: the processes' batches are disjoint and together form the global
    batch. An iterator's get_state()/set_state() (saved with checkpoints) resume it exactly.

    pack: each row holds as many whole examples as fit (best fit over a pool of open rows), and
    the batch adds "segment_ids" (1, 2, ... per example, 0 on padding) and "positions" (from 0
    in each example), so that the model attends within each example only.
    """
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} must be divisible by {process_count} processes")
    tokens, mask, lengths = data.tokens, data.loss_mask, data.lengths
    rows = batch_size // process_count
    stream = grain.MapDataset.source(range(len(tokens))).seed(seed).shuffle().repeat(None)
    stream = stream[process_index::process_count]
    if not pack:
        return stream.map(lambda i: {"tokens": tokens[i], "loss_mask": mask[i]}).batch(rows).to_iter_dataset()
    examples = stream.map(lambda i: {"tokens": tokens[i, : lengths[i]], "loss_mask": mask[i, : lengths[i]]})
    width = tokens.shape[1]
    packed = grain.experimental.BestFitPackIterDataset(
        examples.to_iter_dataset(),
        length_struct={"tokens": width, "loss_mask": width},
        num_packing_bins=max(_PACKING_ROWS, rows),
        seed=seed,
    )
    return packed.map(_packed_row).batch(rows)


def _packed_row(row: dict) -> dict:
    return {
        "tokens": row["tokens"],
        "loss_mask": row["loss_mask"],
        "segment_ids": row["tokens_segment_ids"].astype(np.int32),
        "positions": row["tokens_positions"].astype(np.int32),
    }


def fixed_batches(data: EncodedExamples, batch_size: int) -> list[dict]:
    """The examples in order, in full batches (the last one padded with masked rows)."""
    n = len(data.tokens)
    batches = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        keep = (np.arange(start, start + batch_size) < n)[:, None]
        batches.append({"tokens": data.tokens[rows], "loss_mask": data.loss_mask[rows] * keep})
    return batches
