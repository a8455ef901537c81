"""Inference-scaling metrics over n sampled answers per problem: pure Python/numpy so that reports never need JAX.

pass@k uses the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"):
from n samples with c correct, the chance that a random k-subset holds at least one correct sample.
maj@k splits the n samples into floor(n/k) disjoint consecutive chunks of k, majority-votes each chunk,
and averages, so every sample is used at most once and the estimate does not depend on a random seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), as the product prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials, no overflow."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def majority_correct(keys: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether a majority vote over one problem's answers is right.

    `keys` are normalized answers (None = no answer, which never votes). The most common key wins, ties going to
    the key seen first; the vote is right iff some sample with the winning key is correct (samples with equal keys
    should agree, and if the grader disagrees we give the vote the benefit of the doubt). All None -> False.
    """
    if len(keys) != len(correct):
        raise ValueError(f"keys and correct differ in length: {len(keys)} != {len(correct)}")
    counts: dict[str, int] = {}  # insertion order = first occurrence, so max() breaks ties by it
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return False
    winner = max(counts, key=counts.__getitem__)  # max returns the first maximal item
    return any(ok for key, ok in zip(keys, correct) if key == winner)


def maj_at_k(keys: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """Mean of `majority_correct` over the floor(n/k) disjoint consecutive chunks of k samples (leftovers unused)."""
    n = len(keys)
    if len(correct) != n:
        raise ValueError(f"keys and correct differ in length: {n} != {len(correct)}")
    if k < 1 or n // k < 1:
        raise ValueError(f"maj@k needs 1 <= k <= n (at least one chunk of k samples), got n={n}, k={k}")
    chunks = n // k
    votes = [majority_correct(keys[j * k : (j + 1) * k], correct[j * k : (j + 1) * k]) for j in range(chunks)]
    return sum(votes) / chunks


def length_stats(lengths: Sequence[int | float]) -> dict:
    """mean, median, p90 (numpy's linear interpolation), max, min as floats, plus count; empty -> zeros."""
    if len(lengths) == 0:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0, "min": 0.0, "count": 0}
    a = np.asarray(lengths, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
        "min": float(a.min()),
        "count": int(a.size),
    }


def summarize(per_problem: Sequence[dict], ks: Sequence[int]) -> dict:
    """Aggregate metrics over problems that each have the same number n of samples.

    Each item has "correct" (list[bool]), "keys" (list[str | None]), "lengths" (list[int]) and "truncated"
    (list[bool]), all of length n. pass@k and maj@k are averaged over problems; keys f"pass@{k}" and f"maj@{k}"
    appear only for k <= n. "pass@1" is always present (mean correctness); "length" and "truncated_rate" pool
    all samples.
    """
    if not per_problem:
        raise ValueError("summarize needs at least one problem")
    n = len(per_problem[0]["correct"])
    if n == 0:
        raise ValueError("summarize needs at least one sample per problem")
    for i, p in enumerate(per_problem):
        sizes = {field: len(p[field]) for field in ("correct", "keys", "lengths", "truncated")}
        if set(sizes.values()) != {n}:
            raise ValueError(f"problem {i}: every problem must have n={n} samples in every field, got {sizes}")
    counts = [sum(bool(x) for x in p["correct"]) for p in per_problem]
    out: dict = {
        "num_problems": len(per_problem),
        "num_samples": n,
        "pass@1": float(np.mean([c / n for c in counts])),
    }
    for k in ks:
        if k < 1:
            raise ValueError(f"ks must be >= 1, got {k}")
        if k > n:
            continue
        out[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for c in counts]))
        out[f"maj@{k}"] = float(np.mean([maj_at_k(p["keys"], p["correct"], k) for p in per_problem]))
    out["length"] = length_stats([length for p in per_problem for length in p["lengths"]])
    out["truncated_rate"] = float(np.mean([bool(t) for p in per_problem for t in p["truncated"]]))
    return out


def paired_difference(before: Sequence[float], after: Sequence[float], z: float = 1.96) -> dict:
    """mean(after - before) over problems scored by both, its standard error and the normal
    interval mean +- z * stderr (z = 1.96: 95%).

    Pairing by problem removes the spread of problem difficulty that two independent means would
    carry, so the interval says whether a difference measured on this split is more than the luck
    of which samples were drawn; it says nothing about a retrained model (a second run of the
    whole pipeline can differ by more)."""
    if len(before) != len(after):
        raise ValueError(f"paired values differ in count: {len(before)} and {len(after)}")
    if len(before) < 2:
        raise ValueError("a paired difference needs at least two problems")
    d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    mean, stderr = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    return {"mean": mean, "stderr": stderr, "low": mean - z * stderr, "high": mean + z * stderr}
