"""t1jax.eval.metrics: pass@k against hand-worked values and brute-force enumeration, maj@k votes, summarize."""

import itertools
import math
from fractions import Fraction

import pytest

from t1jax.eval.metrics import length_stats, maj_at_k, majority_correct, paired_difference, pass_at_k, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) that contain a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_by_hand():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2) = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 2, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct one
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)


def test_pass_at_k_edges():
    assert pass_at_k(6, 0, 1) == 0.0
    assert pass_at_k(6, 0, 6) == 0.0
    assert pass_at_k(6, 6, 1) == 1.0
    assert pass_at_k(6, 6, 6) == 1.0
    assert pass_at_k(6, 1, 6) == 1.0  # k = n: any correct sample is in the only subset
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0


def test_pass_at_k_matches_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_is_stable():
    n, c, k = 200, 37, 50
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(100_000, 1, 1) == pytest.approx(1e-5, rel=1e-9)
    assert 0.0 <= pass_at_k(20_000, 3, 10_000) <= 1.0


@pytest.mark.parametrize("n,c,k", [(4, 1, 5), (4, 1, 0), (4, -1, 1), (4, 5, 1)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_majority_vote_and_ties():
    assert majority_correct(["1", "2", "2"], [True, False, False]) is False
    assert majority_correct(["1", "2", "2"], [False, True, True]) is True
    # Tie: the key that appeared first wins.
    assert majority_correct(["a", "b", "b", "a"], [False, True, True, False]) is False
    assert majority_correct(["b", "a", "a", "b"], [True, False, False, True]) is True
    # None never votes, even when it is the most common.
    assert majority_correct([None, None, None, "x"], [False, False, False, True]) is True
    assert majority_correct([None, None], [False, False]) is False
    assert majority_correct([], []) is False
    with pytest.raises(ValueError):
        majority_correct(["a"], [True, False])


def test_maj_at_k_chunks():
    keys = ["1", "2", "2", "1", "9"]
    correct = [True, False, False, True, False]
    assert maj_at_k(keys, correct, 1) == pytest.approx(2 / 5)
    # Chunks ["1","2"] (tie -> "1", right) and ["2","1"] (tie -> "2", wrong); the fifth sample is unused.
    assert maj_at_k(keys, correct, 2) == pytest.approx(0.5)
    assert maj_at_k(keys, correct, 5) == 1.0  # "1" and "2" tie at 2 votes; "1" came first
    for k in (0, 6):
        with pytest.raises(ValueError):
            maj_at_k(keys, correct, k)


def test_length_stats():
    assert length_stats([]) == {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0, "min": 0.0, "count": 0}
    s = length_stats(list(range(1, 12)))  # 1..11
    assert s == {"mean": 6.0, "median": 6.0, "p90": 10.0, "max": 11.0, "min": 1.0, "count": 11}
    assert all(isinstance(s[k], float) for k in ("mean", "median", "p90", "max", "min"))


PROBLEMS = [
    # c=2: pass@2 = 1 - C(2,2)/C(4,2) = 5/6; maj@1 = 2/4; maj@2 = (tie->"1" right, tie->"2" wrong) = 1/2; maj@4 = 1.
    {
        "correct": [True, False, False, True],
        "keys": ["1", "2", "2", "1"],
        "lengths": [10, 20, 30, 40],
        "truncated": [False, False, False, False],
    },
    # c=0: everything 0; "3" wins the vote over the unanswered samples but is wrong.
    {
        "correct": [False, False, False, False],
        "keys": [None, "3", "3", None],
        "lengths": [100, 100, 100, 100],
        "truncated": [True, False, False, True],
    },
    # c=3: pass@1 = 3/4, pass@2 = pass@4 = 1; maj@1 = 3/4, maj@2 = ("5","5" right; "5","6" tie -> "5" right) = 1.
    {
        "correct": [True, True, True, False],
        "keys": ["5", "5", "5", "6"],
        "lengths": [1, 2, 3, 4],
        "truncated": [False, False, False, False],
    },
]


def test_summarize_by_hand():
    s = summarize(PROBLEMS, ks=[1, 2, 4, 8])
    assert set(s) == {
        "num_problems",
        "num_samples",
        "pass@1",
        "maj@1",
        "pass@2",
        "maj@2",
        "pass@4",
        "maj@4",
        "length",
        "truncated_rate",
    }  # k=8 > n=4 is skipped
    assert s["num_problems"] == 3 and s["num_samples"] == 4
    assert s["pass@1"] == pytest.approx((0.5 + 0 + 0.75) / 3)
    assert s["pass@2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert s["pass@4"] == pytest.approx(2 / 3)
    assert s["maj@1"] == pytest.approx((0.5 + 0 + 0.75) / 3)
    assert s["maj@2"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s["maj@4"] == pytest.approx(2 / 3)
    # Lengths sorted: 1 2 3 4 10 20 30 40 100 100 100 100.
    assert s["length"] == {"mean": 42.5, "median": 25.0, "p90": 100.0, "max": 100.0, "min": 1.0, "count": 12}
    assert s["truncated_rate"] == pytest.approx(2 / 12)


def test_summarize_pass1_is_mean_of_pass_at_k():
    s = summarize(PROBLEMS, ks=[])
    expected = sum(pass_at_k(4, sum(p["correct"]), 1) for p in PROBLEMS) / 3
    assert s["pass@1"] == pytest.approx(expected)


def test_summarize_rejects_bad_input():
    uneven = [PROBLEMS[0], {k: v[:3] for k, v in PROBLEMS[1].items()}]
    with pytest.raises(ValueError, match="n=4"):
        summarize(uneven, ks=[1])
    ragged = [dict(PROBLEMS[0], lengths=[1, 2])]
    with pytest.raises(ValueError):
        summarize(ragged, ks=[1])
    with pytest.raises(ValueError):
        summarize([], ks=[1])


def test_paired_difference_by_hand():
    # differences 1, 0, 1, 0: mean 1/2, sample sd sqrt(1/3), stderr sqrt(1/3) / 2
    out = paired_difference([0, 1, 0, 0.5], [1, 1, 1, 0.5])
    stderr = math.sqrt(1 / 3) / 2
    assert out["mean"] == pytest.approx(0.5) and out["stderr"] == pytest.approx(stderr)
    assert (out["low"], out["high"]) == pytest.approx((0.5 - 1.96 * stderr, 0.5 + 1.96 * stderr))
    same = paired_difference([0.25, 1.0], [0.25, 1.0])  # no difference anywhere: a zero-width interval
    assert (same["mean"], same["low"], same["high"]) == (0.0, 0.0, 0.0)


def test_paired_difference_rejects_unpaired_input():
    with pytest.raises(ValueError, match="count"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="at least two"):
        paired_difference([1], [0])
