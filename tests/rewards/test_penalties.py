"""T1 penalties against hand-worked examples: repetition in tokens, garbage share, truncation."""

import numpy as np
import pytest

from t1jax.errors import ConfigError
from t1jax.rewards import PenaltyConfig, apply_penalties
from t1jax.rewards.penalties import is_garbage, is_repetitive, max_ngram_count

# A toy vocabulary: how each token id reads as text.
VOCAB = {1: "ab", 2: "a", 3: "b", 4: " the", 5: " cat", 6: " sat", 7: ".", 20: "", 21: "", 22: "", 23: ""}


def decode(tokens) -> str:
    return "".join(VOCAB[t] for t in tokens)


def char_ngram_max(text: str, n: int) -> int:
    """The same rule measured in characters, which the penalty deliberately does not use."""
    counts = {}
    for i in range(len(text) - n + 1):
        counts[text[i : i + n]] = counts.get(text[i : i + n], 0) + 1
    return max(counts.values(), default=0)


def test_max_ngram_count_by_hand():
    seq = [1, 2, 3, 1, 2, 3, 1, 2, 3]
    assert max_ngram_count(seq, 3) == 3  # (1,2,3) at 0, 3, 6
    assert max_ngram_count(seq, 2) == 3  # (1,2) and (2,3) three times, (3,1) twice
    assert max_ngram_count(seq, 1) == 3
    assert max_ngram_count(seq, 9) == 1
    assert max_ngram_count(seq, 10) == 0
    assert max_ngram_count([7, 7, 7, 7, 7], 2) == 4  # overlapping occurrences count


def test_repetition_threshold_is_strictly_more_than():
    seq = np.array([4, 5, 6, 7] * 3)
    assert is_repetitive(seq, PenaltyConfig(ngram=4, max_repeats=2))  # 3 > 2
    assert not is_repetitive(seq, PenaltyConfig(ngram=4, max_repeats=3))
    assert not is_repetitive(seq, PenaltyConfig(ngram=4, max_repeats=None))


def test_text_repeats_but_tokens_do_not():
    # "abab...ab" (26 times), tokenized as "ab" or "a"+"b" following a de Bruijn-like bit pattern:
    # the text is one long repetition, but no token 6-gram occurs more than 3 times: not penalized.
    tokens = []
    for bit in "0000111101100101" + "0001011100":
        tokens += [1] if bit == "0" else [2, 3]
    assert decode(tokens) == "ab" * 26
    config = PenaltyConfig(ngram=6, max_repeats=4)
    assert char_ngram_max(decode(tokens), 6) > 4
    assert max_ngram_count(tokens, 6) == 3
    assert not is_repetitive(np.array(tokens), config)


def test_tokens_repeat_but_text_does_not():
    # A loop of invisible tokens (ids that decode to nothing): no text at all, but a token
    # 4-gram repeated 6 times: penalized.
    tokens = [20, 21, 22, 23] * 6 + [4, 5, 6, 7]
    assert decode(tokens) == " the cat sat."
    config = PenaltyConfig(ngram=4, max_repeats=4)
    assert char_ngram_max(decode(tokens), 4) <= 4
    assert max_ngram_count(tokens, 4) == 6
    assert is_repetitive(np.array(tokens), config)


def test_garbage_share():
    garbage_ids = frozenset({0, *range(3, 259)})  # unk + byte fallback in a sentencepiece-like vocab
    config = PenaltyConfig(garbage_ids=garbage_ids, max_garbage_fraction=0.1)
    assert is_garbage(np.array([300] * 8 + [5, 0]), config)  # 2 of 10 = 0.2 > 0.1
    assert not is_garbage(np.array([300] * 9 + [5]), config)  # 1 of 10 = 0.1, not above
    assert not is_garbage(np.array([5] * 10), PenaltyConfig())  # no garbage ids given: never garbage
    assert not is_garbage(np.array([], dtype=np.int64), config)


def test_flagged_samples_get_the_penalty_and_correctness_stays_raw():
    config = PenaltyConfig(ngram=3, max_repeats=2, garbage_ids=frozenset({0}), max_garbage_fraction=0.25)
    tokens = [
        [4, 5, 6, 7],  # clean, correct -> 1
        [4, 5, 6, 7],  # truncated, correct -> -1
        [4, 5, 6],  # clean, wrong -> 0
        [1, 2, 3, 1, 2, 3, 1, 2, 3],  # repetitive (3 > 2), correct -> -1
        [0, 0, 4, 5],  # garbage (0.5 > 0.25), wrong -> -1
    ]
    correct = np.array([True, True, False, True, False])
    truncated = np.array([False, True, False, False, False])
    out = apply_penalties(correct, tokens, truncated, config)
    np.testing.assert_array_equal(out.reward, np.array([1, -1, 0, -1, -1], dtype=np.float32))
    assert out.reward.dtype == np.float32
    np.testing.assert_array_equal(out.correct, correct)
    np.testing.assert_array_equal(out.truncated, truncated)
    np.testing.assert_array_equal(out.repetitive, [False, False, False, True, False])
    np.testing.assert_array_equal(out.garbage, [False, False, False, False, True])
    np.testing.assert_array_equal(out.penalized, [False, True, False, True, True])


def test_custom_penalty_value():
    out = apply_penalties([True, False], [[1], [2]], [True, True], PenaltyConfig(penalty=-0.5))
    np.testing.assert_array_equal(out.reward, [-0.5, -0.5])


def test_disabled_penalties_change_nothing():
    config = PenaltyConfig(enabled=False, ngram=3, max_repeats=2, garbage_ids=frozenset({0}))
    correct = np.array([True, False, True])
    tokens = [[1, 2, 3] * 5, [0, 0, 0], [4, 5]]
    out = apply_penalties(correct, tokens, np.array([True, True, False]), config)
    np.testing.assert_array_equal(out.reward, correct.astype(np.float32))
    np.testing.assert_array_equal(out.correct, correct)
    # the flags are still reported, for logging
    np.testing.assert_array_equal(out.repetitive, [True, False, False])
    np.testing.assert_array_equal(out.garbage, [False, True, False])


def test_padded_array_with_lengths_ignores_padding():
    config = PenaltyConfig(ngram=2, max_repeats=3)
    tokens = np.array([[4, 5, 6, 0, 0, 0, 0, 0, 0], [7, 7, 7, 7, 7, 0, 0, 0, 0]])
    out = apply_penalties([True, True], tokens, [False, False], config, lengths=np.array([3, 5]))
    # Row 0: the zero padding would repeat (0, 0) five times if counted; row 1: (7, 7) four times > 3.
    np.testing.assert_array_equal(out.repetitive, [False, True])
    np.testing.assert_array_equal(out.reward, [1, -1])


def test_bad_inputs():
    with pytest.raises(ConfigError):
        PenaltyConfig(ngram=0)
    with pytest.raises(ConfigError):
        PenaltyConfig(max_repeats=0)
    with pytest.raises(ConfigError):
        PenaltyConfig(max_garbage_fraction=1.5)
    with pytest.raises(ValueError):
        apply_penalties([True, False], [[1]], [False, False], PenaltyConfig())
    with pytest.raises(ValueError):
        apply_penalties([True], np.zeros((1, 4), int), [False], PenaltyConfig(), lengths=np.array([5]))
