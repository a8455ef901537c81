"""The RL math against independent numpy references written with explicit loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t1jax.train.objectives import (
    ema_update,
    kl_normalized_rewards,
    policy_loss,
    rloo_advantages,
    token_entropy,
    token_kl,
)


def _loo_reference(x):
    out = np.zeros_like(x, dtype=np.float64)
    for p in range(x.shape[0]):
        for i in range(x.shape[1]):
            others = [x[p, j] for j in range(x.shape[1]) if j != i]
            out[p, i] = x[p, i] - sum(others) / len(others)
    return out


@pytest.mark.parametrize(
    "rewards",
    [
        np.array([[1.0, 0.0]]),  # K = 2: +-1
        np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]),  # all equal: no signal
        np.array([[1.0, 0.0, 0.0, -1.0], [0.5, 1.0, 0.0, 1.0]]),
    ],
)
def test_rloo_advantages(rewards):
    np.testing.assert_allclose(rloo_advantages(rewards), _loo_reference(rewards), rtol=1e-6, atol=1e-7)


def test_rloo_by_hand_and_k_1_is_an_error():
    np.testing.assert_allclose(rloo_advantages(np.array([[1.0, 0.0, 0.0]])), [[1.0, -0.5, -0.5]])
    with pytest.raises(ValueError, match="at least 2 samples"):
        rloo_advantages(np.ones((2, 1)))


def test_kl_normalized_rewards():
    rewards = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    kl = np.array([[3.0, 1.0, 2.0], [0.5, 0.5, 0.5]])
    beta = 0.1
    expected = rewards - beta * _loo_reference(kl)
    np.testing.assert_allclose(kl_normalized_rewards(rewards, kl, beta), expected, rtol=1e-6)
    # equal KLs within a group change nothing; by hand for the first row: 1 - 0.1 * (3 - 1.5)
    np.testing.assert_allclose(kl_normalized_rewards(rewards, kl, beta)[1], rewards[1])
    assert float(kl_normalized_rewards(rewards, kl, beta)[0, 0]) == pytest.approx(0.85)


def test_token_kl_estimators():
    rng = np.random.default_rng(0)
    logp, ref = -rng.random((3, 5)) * 3, -rng.random((3, 5)) * 3
    k1 = [[logp[b, t] - ref[b, t] for t in range(5)] for b in range(3)]
    k3 = [[np.exp(ref[b, t] - logp[b, t]) - 1 - (ref[b, t] - logp[b, t]) for t in range(5)] for b in range(3)]
    np.testing.assert_allclose(token_kl(logp, ref, "k1"), k1, rtol=1e-5)
    np.testing.assert_allclose(token_kl(logp, ref, "k3"), k3, rtol=1e-5)
    assert (np.asarray(token_kl(logp, ref, "k3")) >= 0).all()
    np.testing.assert_allclose(token_kl(logp, logp, "k3"), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        token_kl(logp, ref, "k2")


def test_token_entropy_matches_reference_and_survives_extreme_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 7))
    logits[0, 0] = [1000.0, -1000.0, 0, 0, 0, 0, 0]  # one-hot: entropy 0
    logits[0, 1] = 0.0  # uniform: log 7
    logits[1, 2] = [-1e4] * 7  # uniform again, extreme offset

    def reference(row):
        row = row.astype(np.float64) - row.max()
        p = np.exp(row) / np.exp(row).sum()
        return -sum(pi * np.log(pi) for pi in p if pi > 0)

    expected = np.array([[reference(logits[b, t]) for t in range(3)] for b in range(2)])
    result = np.asarray(token_entropy(logits))
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    assert result[0, 0] == pytest.approx(0.0, abs=1e-6) and result[0, 1] == pytest.approx(np.log(7), rel=1e-6)
    assert np.isfinite(result).all()


def _policy_loss_reference(logp, old, adv, mask, low, high, aggregation):
    per_token = np.zeros_like(logp)
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            ratio = np.exp(logp[b, t] - old[b, t])
            per_token[b, t] = -min(ratio * adv[b], np.clip(ratio, 1 - low, 1 + high) * adv[b])
    if aggregation == "token_mean":
        return (per_token * mask).sum() / mask.sum()
    return np.mean([(per_token[b] * mask[b]).sum() / mask[b].sum() for b in range(len(adv))])


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean"])
def test_policy_loss_against_reference(aggregation):
    rng = np.random.default_rng(2)
    logp = -rng.random((4, 6)) * 2
    old = logp + rng.normal(size=(4, 6)) * 0.5  # ratios inside and outside the clip range
    adv = np.array([1.0, -1.0, 0.5, -2.0])
    mask = (rng.random((4, 6)) < 0.7).astype(np.float64)
    mask[:, 0] = 1
    expected = _policy_loss_reference(logp, old, adv, mask, 0.2, 0.28, aggregation)
    np.testing.assert_allclose(policy_loss(logp, old, adv, mask, 0.2, 0.28, aggregation), expected, rtol=1e-5)


def test_on_policy_gradient_is_reinforce():
    """With logp == old_logp the gradient is -A * mask / count for every token."""
    logp = jnp.asarray([[-1.0, -2.0, -0.5], [-0.3, -0.7, -1.1]])
    adv = jnp.asarray([2.0, -1.0])
    mask = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    grad = jax.grad(lambda lp: policy_loss(lp, logp, adv, mask))(logp)
    np.testing.assert_allclose(grad, -adv[:, None] * mask / 5.0, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown aggregation"):
        policy_loss(logp, logp, adv, mask, aggregation="sum")


def test_ema_update():
    anchor = {"w": jnp.asarray([0.0, 2.0]), "b": {"c": jnp.asarray(4.0)}}
    params = {"w": jnp.asarray([1.0, 0.0]), "b": {"c": jnp.asarray(0.0)}}
    moved = ema_update(anchor, params, 0.75)
    np.testing.assert_allclose(moved["w"], [0.25, 1.5])
    np.testing.assert_allclose(moved["b"]["c"], 3.0)
    reset = ema_update(anchor, params, 0.0)
    np.testing.assert_array_equal(reset["w"], params["w"])
    frozen = ema_update(anchor, params, 1.0)
    np.testing.assert_array_equal(frozen["w"], anchor["w"])


def test_selection_uses_raw_correctness_and_balances():
    from t1jax.train.rl.selection import has_signal, keep_m_of_k

    correct = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0]], bool)
    np.testing.assert_array_equal(has_signal(correct), [False, False, True, True])
    rng = np.random.default_rng(0)
    picked = keep_m_of_k(correct[2], 2, rng)
    assert sorted(correct[2][picked].tolist()) == [False, True]  # one right, one wrong
    picked = keep_m_of_k(np.array([1, 1, 1, 0, 0, 1], bool), 4, rng)
    assert np.asarray([1, 1, 1, 0, 0, 1], bool)[picked].sum() == 2  # 2 right + 2 wrong
    picked = keep_m_of_k(np.array([1, 1, 1, 1, 0], bool), 4, rng)
    assert len(set(picked.tolist())) == 4 and 4 in picked  # the only wrong one is kept
    with pytest.raises(ValueError, match="keep_per_prompt"):
        keep_m_of_k(correct[0], 5, rng)


def test_groups_differing_only_by_penalties_are_still_filtered():
    """Shaped rewards differ (a penalised sample gets -1) but raw correctness is all wrong: the
    group has no signal and is dropped before the loss; a mixed group is kept."""
    from t1jax.rewards.penalties import PenaltyConfig, apply_penalties
    from t1jax.train.rl.selection import has_signal

    correct = np.array([False, False, False, False, True, False, True, False])
    tokens = [[5, 6, 7]] * 8
    truncated = np.array([True, False, False, False, False, False, False, False])
    breakdown = apply_penalties(correct, tokens, truncated, PenaltyConfig())
    reward_PK, correct_PK = breakdown.reward.reshape(2, 4), breakdown.correct.reshape(2, 4)
    assert reward_PK[0].std() > 0  # the shaped rewards of group 0 differ ...
    np.testing.assert_array_equal(has_signal(correct_PK), [False, True])  # ... yet it is filtered
