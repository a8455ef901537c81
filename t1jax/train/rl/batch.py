"""The per-token arrays the RL update trains on: sequences packed into rows, each token's loss
weight, and the advantages of T1's KL-normalised RLOO spread over the tokens."""

from __future__ import annotations

import numpy as np

from t1jax.sampling import bucket
from t1jax.train.objectives import token_kl
from t1jax.train.rl.rollout import RolloutGroups


def row_length(groups: RolloutGroups) -> int:
    """The longest sequence a batch of these groups can hold: bucketed prompt width + M."""
    return bucket(max(len(p) for p in groups.prompts)) + groups.tokens.shape[2]


def pack(groups: RolloutGroups, pad_id: int, rl_config, row_multiple: int) -> dict:
    """The update's rows for these groups (build_batch). Unpacked: a static shape, one row per
    sample of prompts_per_step x kept samples. Packed (rl.pack): rows pack_factor times as long, as
    many as needed in steps of 1/8 of the unpacked count, so a run compiles the update for a few
    row counts only. The row count is a multiple of `row_multiple` (minibatches x micro-batches x
    batch shards)."""
    r = rl_config
    capacity = r.prompts_per_step * (r.keep_per_prompt or r.sampling.num_samples)
    if not r.pack:
        return build_batch(groups, pad_id, row_length(groups), min_rows=capacity, row_multiple=row_multiple)
    quantum = row_multiple * max(1, capacity // (8 * row_multiple))
    return build_batch(groups, pad_id, row_length(groups) * r.pack_factor, pack=True, row_multiple=quantum)


def build_batch(
    groups: RolloutGroups, pad_id: int, row_len: int, pack: bool = False, min_rows: int = 0, row_multiple: int = 1
) -> dict:
    """The per-token arrays [rows, row_len] of an RL batch (see rl_step.BATCH_KEYS), plus
    `sequence`: the index p * K + k of the sample each token belongs to, -1 on padding (for the
    host's per-sequence sums; the update does not read it).

    Each sequence is its prompt then its response, whole, from position 0. Unpacked, row i holds
    sequence i; packed, sequences fill rows first-fit in decreasing length, told apart by segment
    ids. Samples without response tokens (a sampler always emits at least one) are left out.
    rows = the rows filled, at least `min_rows`, rounded up to a multiple of `row_multiple` (a
    static shape unpacked; a bounded number of shapes packed).
    """
    P, K, M = groups.tokens.shape
    response_lengths = groups.lengths.reshape(-1)
    lengths = np.array([len(groups.prompts[i // K]) for i in range(P * K)], np.int64) + response_lengths
    placed = np.flatnonzero(response_lengths > 0)
    if placed.size and lengths.max() > row_len:
        raise ValueError(f"a sequence of {lengths.max()} tokens does not fit rows of {row_len}")
    if pack:
        placement = _first_fit_decreasing(lengths, placed, row_len)
    else:
        placement = {int(i): (int(i), 0) for i in placed}
    filled = 1 + max((row for row, _ in placement.values()), default=-1)
    rows = -(-max(filled, min_rows, 1) // row_multiple) * row_multiple

    batch = {
        "tokens": np.full((rows, row_len), pad_id, np.int32),
        "positions": np.zeros((rows, row_len), np.int32),
        "segment_ids": np.zeros((rows, row_len), np.int32),
        "response": np.zeros((rows, row_len), bool),
        "old_logp": np.zeros((rows, row_len), np.float32),
        "sequence": np.full((rows, row_len), -1, np.int32),
    }
    for i, (row, start) in sorted(placement.items(), key=lambda item: item[1]):
        prompt, n = groups.prompts[i // K], int(response_lengths[i])
        span, reply = slice(start, start + len(prompt) + n), slice(start + len(prompt), start + len(prompt) + n)
        batch["tokens"][row, span] = np.concatenate([prompt, groups.tokens[i // K, i % K, :n]])
        batch["positions"][row, span] = np.arange(len(prompt) + n)
        batch["segment_ids"][row, span] = 1 + batch["segment_ids"][row].max()
        batch["response"][row, reply] = True
        batch["old_logp"][row, reply] = groups.logprobs[i // K, i % K, :n]
        batch["sequence"][row, span] = i
    return batch


def _first_fit_decreasing(lengths: np.ndarray, indices: list[int], row_len: int) -> dict[int, tuple[int, int]]:
    """Sequence index -> (row, start) with every row at most row_len tokens long."""
    free = np.zeros(0, np.int64)  # free tokens at the end of each open row
    placement = {}
    for i in sorted(indices, key=lambda i: -lengths[i]):
        fits = np.flatnonzero(free >= lengths[i])
        if fits.size:
            row = int(fits[0])
        else:
            row, free = len(free), np.append(free, row_len)
        placement[i] = (row, row_len - int(free[row]))
        free[row] -= lengths[i]
    return placement


def loss_weights(batch: dict, aggregation: str) -> np.ndarray:
    """Each response token's weight in the policy loss of this (mini)batch, [rows, row_len].

    token_mean: 1 / (the batch's response tokens); seq_mean: 1 / (the sequence's response tokens
    x the batch's sequences). The loss is then one weighted sum, the same whether sequences are
    packed or not, and exact under gradient accumulation.
    """
    response, sequence = batch["response"], batch["sequence"]
    weights = np.zeros(response.shape, np.float32)
    if not response.any():
        return weights
    if aggregation == "token_mean":
        weights[response] = 1.0 / response.sum()
    elif aggregation == "seq_mean":
        _, which, counts = np.unique(sequence[response], return_inverse=True, return_counts=True)
        weights[response] = 1.0 / (counts[which] * len(counts))
    else:
        raise ValueError(f"unknown aggregation {aggregation!r} (use 'token_mean' or 'seq_mean')")
    return weights


def sequence_kl(groups: RolloutGroups, batch: dict, ref_logp, estimator: str) -> np.ndarray:
    """d_i [P, K]: each sample's KL to the anchor, its per-token estimates (old_logp against the
    anchor's `ref_logp`) summed over its response tokens, wherever the batch put them."""
    P, K = groups.correct.shape
    response, sequence = batch["response"], batch["sequence"]
    kl_tokens = np.asarray(token_kl(batch["old_logp"], ref_logp, estimator))
    return np.bincount(sequence[response], kl_tokens[response], minlength=P * K).reshape(P, K)


def token_advantages(batch: dict, advantages_PK) -> np.ndarray:
    """[rows, row_len]: every token carries the advantage of the sample it belongs to (0 on padding)."""
    per_sample = np.asarray(advantages_PK).reshape(-1)
    sequence = batch["sequence"]
    return np.where(sequence >= 0, per_sample[sequence], 0.0).astype(np.float32)
