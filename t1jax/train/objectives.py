"""The math of T1's RL update as pure functions (docs/recipe.md, section 2).

Shapes: P prompts x K samples (`_PK`), B sequences x T tokens (`_BT`), vocabulary V. Inputs may
be numpy or JAX arrays; outputs are JAX arrays. Everything is differentiable where it has to be
(policy_loss in logp_BT, token_entropy in logits_BTV).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _leave_one_out_mean(x_PK):
    """mean_{j != i} x_j within each row (needs K >= 2)."""
    K = x_PK.shape[-1]
    if K < 2:
        raise ValueError(f"leave-one-out needs at least 2 samples per prompt, got K={K}")
    return (jnp.sum(x_PK, axis=-1, keepdims=True) - x_PK) / (K - 1)


def rloo_advantages(rewards_PK):
    """A_i = r_i - mean_{j != i} r_j: the REINFORCE leave-one-out baseline (zero for equal rewards)."""
    rewards_PK = jnp.asarray(rewards_PK, jnp.float32)
    return rewards_PK - _leave_one_out_mean(rewards_PK)


def kl_normalized_rewards(rewards_PK, kl_PK, beta: float):
    """r'_i = r_i - beta * (kl_i - mean_{j != i} kl_j): T1's on-policy KL normalisation, which
    penalises a sample's KL relative to its siblings rather than in absolute terms."""
    kl_PK = jnp.asarray(kl_PK, jnp.float32)
    return jnp.asarray(rewards_PK, jnp.float32) - beta * (kl_PK - _leave_one_out_mean(kl_PK))


def token_kl(logp_BT, ref_logp_BT, estimator: str = "k1"):
    """Per-token KL(pi || pi_ref) estimate at the sampled tokens.

    k1: log pi - log pi_ref (unbiased, can be negative per token);
    k3: exp(ref - logp) - 1 - (ref - logp) (unbiased, always >= 0, lower variance).
    """
    log_ratio = jnp.asarray(logp_BT, jnp.float32) - jnp.asarray(ref_logp_BT, jnp.float32)
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return jnp.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (use 'k1' or 'k3')")


def token_entropy(logits_BTV):
    """Full-vocabulary entropy -sum_v p log p at every position, stable for extreme logits."""
    log_probs = jax.nn.log_softmax(jnp.asarray(logits_BTV, jnp.float32), axis=-1)
    probs = jnp.exp(log_probs)
    # where p underflows to 0, p * log p is 0 (log_probs is finite, so no 0 * inf NaN)
    return -jnp.sum(probs * log_probs, axis=-1)


def clipped_surrogate(logp_BT, old_logp_BT, adv_BT, clip_low: float = 0.2, clip_high: float = 0.28):
    """Per-token clipped policy-gradient loss; `adv_BT` is each token's advantage (broadcastable).

    -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A) with ratio = exp(logp - old_logp).
    When logp == old_logp (one pass over fresh samples) the gradient is exactly REINFORCE's,
    -A * grad logp.
    """
    logp_BT = jnp.asarray(logp_BT, jnp.float32)
    adv = jnp.asarray(adv_BT, jnp.float32)
    ratio = jnp.exp(logp_BT - jax.lax.stop_gradient(jnp.asarray(old_logp_BT, jnp.float32)))
    clipped = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return -jnp.minimum(ratio * adv, clipped * adv)


def policy_loss(
    logp_BT,
    old_logp_BT,
    adv_B,
    mask_BT,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    aggregation: str = "token_mean",
):
    """Clipped policy-gradient loss (to minimise) of sequences one per row.

    "token_mean" averages clipped_surrogate over all response tokens of the batch; "seq_mean"
    averages each sequence's tokens, then the sequences.
    """
    mask = jnp.asarray(mask_BT, jnp.float32)
    per_token = clipped_surrogate(logp_BT, old_logp_BT, jnp.asarray(adv_B, jnp.float32)[:, None], clip_low, clip_high)
    if aggregation == "token_mean":
        return jnp.sum(per_token * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    if aggregation == "seq_mean":
        per_sequence = jnp.sum(per_token * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
        return jnp.mean(per_sequence)
    raise ValueError(f"unknown aggregation {aggregation!r} (use 'token_mean' or 'seq_mean')")


def ema_update(anchor_params, params, mu: float):
    """The dynamic anchor's step: theta_ref <- mu * theta_ref + (1 - mu) * theta (mu = 0: reset)."""
    return jax.tree.map(lambda a, p: (mu * a + (1.0 - mu) * p).astype(a.dtype), anchor_params, params)
