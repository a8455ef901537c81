"""Sampled groups (P prompts x K samples) and the padded arrays the RL update trains on."""

from __future__ import annotations

import dataclasses

import numpy as np

from t1jax.sampling import bucket
from t1jax.train.objectives import kl_normalized_rewards, rloo_advantages, token_kl


@dataclasses.dataclass
class RolloutGroups:
    prompts: list[list[int]]  # P prompt token lists
    tokens: np.ndarray  # int32 [P, K, M] generated tokens (padding after the stop)
    lengths: np.ndarray  # [P, K] generated tokens including the stop token
    logprobs: np.ndarray  # [P, K, M] log pi_old of each generated token
    correct: np.ndarray  # bool [P, K] raw correctness (selection reads only this)
    reward: np.ndarray  # [P, K] correctness reward with T1's penalties applied
    truncated: np.ndarray  # bool [P, K]
    repetitive: np.ndarray  # bool [P, K]
    garbage: np.ndarray  # bool [P, K]

    @classmethod
    def from_samples(cls, prompts, out, breakdown, K: int) -> RolloutGroups:
        P = len(prompts)

        def grouped(x):
            return np.asarray(x).reshape(P, K, *np.shape(x)[1:])

        return cls(
            list(prompts),
            grouped(out.tokens),
            grouped(out.lengths),
            grouped(out.logprobs),
            grouped(breakdown.correct),
            grouped(breakdown.reward),
            grouped(breakdown.truncated),
            grouped(breakdown.repetitive),
            grouped(breakdown.garbage),
        )

    def __len__(self) -> int:
        return len(self.prompts)

    def _arrays(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "prompts"}

    def take(self, groups) -> RolloutGroups:
        groups = np.asarray(groups, np.int64)[: len(self)]
        return RolloutGroups([self.prompts[i] for i in groups], **{k: v[groups] for k, v in self._arrays().items()})

    def keep_samples(self, per_group: list[np.ndarray]) -> RolloutGroups:
        """Keeps the given sample indices of every group (the same count in each)."""
        arrays = {k: np.stack([v[g][idx] for g, idx in enumerate(per_group)]) for k, v in self._arrays().items()}
        return RolloutGroups(self.prompts, **arrays)

    @staticmethod
    def concatenate(parts: list[RolloutGroups]) -> RolloutGroups:
        arrays = {k: np.concatenate([p._arrays()[k] for p in parts]) for k in parts[0]._arrays()}
        return RolloutGroups([q for p in parts for q in p.prompts], **arrays)

    def rates(self) -> dict:
        """Statistics of everything sampled (before selection)."""
        return {
            "accuracy": float(self.correct.mean()),
            "reward": float(self.reward.mean()),
            "response_length": float(self.lengths.mean()),
            "truncated_rate": float(self.truncated.mean()),
            "repetitive_rate": float(self.repetitive.mean()),
            "garbage_rate": float(self.garbage.mean()),
            "sampled_tokens": float(self.lengths.sum()),
        }

    def summary(self) -> dict:
        """Statistics of what the update trains on."""
        return {
            "groups_trained": float(len(self)),
            "trained_accuracy": float(self.correct.mean()) if len(self) else 0.0,
        }


def row_length(groups: RolloutGroups) -> int:
    """The longest sequence a batch of these groups can hold: bucketed prompt width + M."""
    return bucket(max(len(p) for p in groups.prompts)) + groups.tokens.shape[2]


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


def shaped_advantages(groups: RolloutGroups, batch: dict, ref_logp, kl_beta: float, kl_estimator: str):
    """T1's advantages as per-token arrays: each sample's KL to the anchor (summed over its
    response tokens, wherever the batch put them), rewards shaped by the on-policy normalised
    KL, then RLOO within each group. Returns (advantage [rows, row_len], KL per sample [P, K])."""
    P, K = groups.correct.shape
    response, sequence = batch["response"], batch["sequence"]
    kl_tokens = np.asarray(token_kl(batch["old_logp"], ref_logp, kl_estimator))
    kl_PK = np.bincount(sequence[response], kl_tokens[response], minlength=P * K).reshape(P, K)
    shaped = kl_normalized_rewards(groups.reward, kl_PK, kl_beta)
    per_sample = np.asarray(rloo_advantages(shaped)).reshape(-1)
    return np.where(sequence >= 0, per_sample[sequence], 0.0).astype(np.float32), kl_PK
