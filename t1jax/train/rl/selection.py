"""Which sampled groups and samples an RL step trains on (pure functions on host arrays).

Selection reads the RAW correctness, never the shaped reward: a group whose answers are all
right or all wrong has no learning signal under RLOO (every advantage is zero), while a
shaped reward can differ within such a group through penalties and KL alone; filtering on it
keeps groups that only teach the penalties, which other stacks found to wreck the policy.
"""

from __future__ import annotations

import numpy as np


def has_signal(correct_PK: np.ndarray) -> np.ndarray:
    """bool [P]: the group's raw correctness is not all equal."""
    correct_PK = np.asarray(correct_PK, bool)
    return correct_PK.any(axis=1) & ~correct_PK.all(axis=1)


def keep_m_of_k(correct_K: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of m of the K samples, balancing right and wrong: up to ceil(m/2) right ones,
    wrong ones for the rest, topped up from whichever class has samples left. Chosen at random
    within each class (so reproducible from `rng`), returned in ascending order."""
    correct_K = np.asarray(correct_K, bool)
    if not 0 < m <= len(correct_K):
        raise ValueError(f"keep_per_prompt must be in 1..K={len(correct_K)}, got {m}")
    right = rng.permutation(np.flatnonzero(correct_K))
    wrong = rng.permutation(np.flatnonzero(~correct_K))
    take_right = min(len(right), -(-m // 2))
    take_wrong = min(len(wrong), m - take_right)
    take_right = m - take_wrong  # top up with right answers when wrong ones run out
    return np.sort(np.concatenate([right[:take_right], wrong[:take_wrong]])).astype(np.int64)


def drop_zero_variance(groups):
    """(the groups with signal, how many were dropped): DAPO's dynamic sampling on RolloutGroups."""
    signal = has_signal(groups.correct)
    return groups.take(np.flatnonzero(signal)), int((~signal).sum())


def keep_m_per_group(groups, m: int, rng: np.random.Generator):
    """Every group cut to m of its K samples by keep_m_of_k (right and wrong balanced)."""
    return groups.keep_samples([keep_m_of_k(correct, m, rng) for correct in groups.correct])
