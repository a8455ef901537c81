"""T1's response penalties: truncated, repetitive or garbage responses get the penalty reward.

Rules (all measured in TOKENS, never characters: a length or repetition rule in characters
punishes a tokenizer's choices, not the model's):
- truncated: the sampler ended the response at the length limit without EOS (given per sample);
- repetitive: some n-gram of token ids (n = `ngram`) occurs more than `max_repeats` times in the
  response. Counted exactly (no hashing). A degenerate loop repeats its n-grams dozens of times;
  a long, healthy reasoning trace rarely repeats a 16-token span five times;
- garbage: more than `max_garbage_fraction` of the response's tokens are in `garbage_ids` (the
  tokenizer's byte-fallback and unknown ids, which the caller knows and passes in).

A flagged sample's reward is `penalty` (T1: -1) instead of its correctness reward (1 or 0). The
raw correctness is returned unchanged beside it: dynamic-sampling filters must use it, never the
shaped reward. With `enabled=False` the reward is the correctness and the flags are only reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from t1jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PenaltyConfig:
    enabled: bool = True
    penalty: float = -1.0
    ngram: int = 16
    max_repeats: int | None = 4  # None: no repetition rule
    garbage_ids: frozenset[int] = frozenset()
    max_garbage_fraction: float = 0.1

    def __post_init__(self):
        if not isinstance(self.ngram, int) or self.ngram < 1:
            raise ConfigError(f"PenaltyConfig.ngram must be a positive int, got {self.ngram!r}")
        if self.max_repeats is not None and (not isinstance(self.max_repeats, int) or self.max_repeats < 1):
            raise ConfigError(f"PenaltyConfig.max_repeats must be a positive int or None, got {self.max_repeats!r}")
        if not 0.0 <= self.max_garbage_fraction <= 1.0:
            raise ConfigError(f"PenaltyConfig.max_garbage_fraction must be in [0, 1], got {self.max_garbage_fraction}")
        object.__setattr__(self, "garbage_ids", frozenset(int(t) for t in self.garbage_ids))


@dataclasses.dataclass(frozen=True)
class RewardBreakdown:
    """Per-sample arrays: the shaped reward, the raw correctness and each penalty flag."""

    reward: np.ndarray  # float32
    correct: np.ndarray  # bool, raw correctness: filter groups on this
    truncated: np.ndarray  # bool
    repetitive: np.ndarray  # bool
    garbage: np.ndarray  # bool

    @property
    def penalized(self) -> np.ndarray:
        """Samples that would get (or got, if enabled) the penalty reward."""
        return self.truncated | self.repetitive | self.garbage


def max_ngram_count(tokens: np.ndarray, n: int) -> int:
    """How often the most frequent n-gram of `tokens` occurs (0 if there are fewer than n tokens)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    if tokens.size < n:
        return 0
    windows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(tokens, n))
    # Each window's bytes as one opaque value, so np.unique compares whole n-grams exactly.
    keys = windows.view(np.dtype((np.void, windows.dtype.itemsize * n))).ravel()
    _, counts = np.unique(keys, return_counts=True)
    return int(counts.max())


def is_repetitive(tokens: np.ndarray, config: PenaltyConfig) -> bool:
    return config.max_repeats is not None and max_ngram_count(tokens, config.ngram) > config.max_repeats


def is_garbage(tokens: np.ndarray, config: PenaltyConfig) -> bool:
    if not config.garbage_ids or len(tokens) == 0:
        return False
    share = np.isin(tokens, np.fromiter(config.garbage_ids, dtype=np.int64)).mean()
    return bool(share > config.max_garbage_fraction)


def _rows(tokens, lengths) -> list[np.ndarray]:
    """Each sample's response tokens: a list of sequences, or a [B, T] array cut at `lengths`."""
    if lengths is None:
        if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
            return list(tokens)
        return [np.asarray(t, dtype=np.int64).reshape(-1) for t in tokens]
    array = np.asarray(tokens)
    lengths = np.asarray(lengths)
    if array.ndim != 2 or lengths.shape != (array.shape[0],):
        raise ValueError(f"tokens must be [B, T] with lengths [B]; got {array.shape} and {lengths.shape}")
    if (lengths < 0).any() or (lengths > array.shape[1]).any():
        raise ValueError(f"lengths must lie in [0, {array.shape[1]}]")
    return [array[b, : int(lengths[b])] for b in range(array.shape[0])]


@dataclasses.dataclass(frozen=True)
class PenaltyFlags:
    """Per-sample penalty flags: they read only the tokens, so they can be found while grading runs."""

    truncated: np.ndarray  # bool
    repetitive: np.ndarray  # bool
    garbage: np.ndarray  # bool


def penalty_flags(
    tokens: Sequence | np.ndarray, truncated: np.ndarray, config: PenaltyConfig, lengths: np.ndarray | None = None
) -> PenaltyFlags:
    """The flags of B samples. `tokens` holds each response's token ids: a list of B sequences,
    or a [B, T] array whose first `lengths[b]` entries are sample b's response (padding after
    that is ignored)."""
    truncated_flags = np.asarray(truncated, dtype=bool).reshape(-1)
    rows = _rows(tokens, lengths)
    if len(rows) != truncated_flags.shape[0]:
        raise ValueError(f"penalty_flags: {len(rows)} token sequences, {truncated_flags.shape[0]} truncation flags")
    repetitive = np.array([is_repetitive(r, config) for r in rows], dtype=bool).reshape(-1)
    garbage = np.array([is_garbage(r, config) for r in rows], dtype=bool).reshape(-1)
    return PenaltyFlags(truncated_flags, repetitive, garbage)


def shaped_rewards(correct: np.ndarray, flags: PenaltyFlags, config: PenaltyConfig) -> RewardBreakdown:
    """Rewards 1/0 by `correct`, or `config.penalty` for flagged samples."""
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if correct.shape != flags.truncated.shape:
        raise ValueError(f"shaped_rewards: {correct.shape[0]} correctness values, {len(flags.truncated)} samples")
    reward = correct.astype(np.float32)
    if config.enabled:
        penalized = flags.truncated | flags.repetitive | flags.garbage
        reward = np.where(penalized, np.float32(config.penalty), reward)
    return RewardBreakdown(
        reward=reward.astype(np.float32),
        correct=correct,
        truncated=flags.truncated,
        repetitive=flags.repetitive,
        garbage=flags.garbage,
    )


def apply_penalties(
    correct: np.ndarray,
    tokens: Sequence | np.ndarray,
    truncated: np.ndarray,
    config: PenaltyConfig,
    lengths: np.ndarray | None = None,
) -> RewardBreakdown:
    """Shaped rewards for B samples: 1/0 by `correct`, or `config.penalty` for flagged samples
    (`tokens` and `lengths` as in `penalty_flags`)."""
    return shaped_rewards(correct, penalty_flags(tokens, truncated, config, lengths), config)
