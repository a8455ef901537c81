"""Loss, schedule and the SFT loop against hand-worked values."""

import jax.numpy as jnp
import numpy as np
import pytest

from t1jax import config as config_lib
from t1jax.train.optimizer import learning_rate_schedule
from t1jax.train.sft_step import masked_token_nll


def test_masked_nll_matches_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)) * 3
    logits[0, 1, 3] = 80.0  # extreme logits must not overflow
    logits[1, 2] = -60.0
    targets = rng.integers(0, 7, (2, 5))
    mask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]])
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -sum(log_probs[b, t, targets[b, t]] for b in range(2) for t in range(5) if mask[b, t])
    total, count = masked_token_nll(jnp.asarray(logits, jnp.float32), jnp.asarray(targets), jnp.asarray(mask))
    assert float(count) == 7
    np.testing.assert_allclose(float(total), expected, rtol=1e-5)


def test_learning_rate_schedule_by_hand():
    optim = config_lib.load(
        None, {"optim.learning_rate": 1e-3, "optim.warmup_steps": 10, "optim.final_lr_fraction": 0.1}
    ).optim
    lr = learning_rate_schedule(optim, 110)
    assert float(lr(0)) == 0.0
    assert float(lr(5)) == pytest.approx(5e-4)
    assert float(lr(10)) == pytest.approx(1e-3)
    # halfway through the cosine: (peak + end) / 2
    assert float(lr(60)) == pytest.approx((1e-3 + 1e-4) / 2, rel=1e-5)
    assert float(lr(110)) == pytest.approx(1e-4)
