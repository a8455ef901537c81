"""Loss, schedule and the SFT loop against hand-worked values."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_runner import ROOT

from t1jax import config as config_lib
from t1jax.errors import ConfigError
from t1jax.train.optimizer import learning_rate_schedule, make_optimizer, trainable_labels
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


def _adamw_reference(params, grads_by_step, optim, schedule):
    """AdamW by hand on a flat list of arrays: global-norm clipping over exactly these arrays, bias
    corrected moments, eps outside the square root, decoupled weight decay."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_by_step):
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
        grads = [g * min(1.0, optim.grad_clip_norm / norm) for g in grads]
        lr = float(schedule(t))
        for i, g in enumerate(grads):
            m[i] = optim.b1 * m[i] + (1 - optim.b1) * g
            v[i] = optim.b2 * v[i] + (1 - optim.b2) * g**2
            m_hat, v_hat = m[i] / (1 - optim.b1 ** (t + 1)), v[i] / (1 - optim.b2 ** (t + 1))
            params[i] = params[i] - lr * (m_hat / (np.sqrt(v_hat) + optim.eps) + optim.weight_decay * params[i])
    return params


def test_a_trainable_pattern_updates_only_the_matching_parameters_with_adamw():
    import optax

    optim = config_lib.load(
        None, {"optim.learning_rate": 0.1, "optim.warmup_steps": 0, "optim.weight_decay": 0.5}
    ).optim
    rng = np.random.default_rng(0)
    params = {
        "blocks": [{"mlp": {"up": rng.normal(size=(3, 4))}}, {"mlp": {"up": rng.normal(size=(3, 4))}}],
        "embed": rng.normal(size=(5, 3)),
        "final_norm": {"scale": rng.normal(size=(3,))},
    }
    params = {k: v for k, v in jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params).items()}
    grads_by_step = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 3, jnp.float32), params)
                     for _ in range(3)]  # fmt: skip
    tx = make_optimizer(optim, 10, trainable_labels(params, r"blocks\.1\.|norm"))
    state, updated = tx.init(params), params
    for grads in grads_by_step:
        updates, state = tx.update(grads, state, updated)
        updated = optax.apply_updates(updated, updates)
    # frozen: unchanged, bit for bit
    np.testing.assert_array_equal(updated["blocks"][0]["mlp"]["up"], params["blocks"][0]["mlp"]["up"])
    np.testing.assert_array_equal(updated["embed"], params["embed"])
    # trained: AdamW by hand on these two alone (the clipping norm covers them only: the frozen
    # gradients are as large, so counting them would change the result)
    picked = lambda tree: [np.asarray(tree["blocks"][1]["mlp"]["up"]), np.asarray(tree["final_norm"]["scale"])]  # noqa: E731
    expected = _adamw_reference(picked(params), [picked(g) for g in grads_by_step], optim,
                                learning_rate_schedule(optim, 10))  # fmt: skip
    for got, want in zip(picked(updated), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_trainable_pattern_that_matches_nothing_names_the_parameters():
    params = {"blocks": [{"mlp": {"up": jnp.zeros((2, 2))}}], "embed": jnp.zeros((3, 2))}
    expected = re.escape(r"(rl.trainable in RL) 'blocks\.7' matches no parameter") + r".*blocks\.0\.mlp\.up, embed"
    with pytest.raises(ConfigError, match=expected):
        trainable_labels(params, r"blocks\.7")


@pytest.mark.slow
def test_sft_stops_at_the_first_non_finite_loss_and_keeps_only_finite_checkpoints(tmp_path, t1jax_cli):
    """Learning rate 1e6: the loss diverges within a few steps. The run exits 2 with one line
    naming the step, and every checkpoint it kept holds finite parameters."""
    from t1jax.runtime.run_dir import checkpoint_steps, load_run

    workdir = tmp_path / "sft"
    args = ["sft", "--config", ROOT / "configs" / "tiny.py", f"--config.run.workdir={workdir}",
            "--config.sft.num_steps=20", "--config.checkpoint.save_every=2", "--config.optim.learning_rate=1e6",
            "--config.optim.warmup_steps=0", "--config.checkpoint.async_save=false"]  # fmt: skip
    done = t1jax_cli(*args, devices=1)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "not finite" in last and last.startswith("t1jax: error: SFT step ") and "Traceback" not in done.stderr
    failed_at = int(last.split("SFT step ")[1].split(":")[0])
    steps = checkpoint_steps(workdir)
    assert steps and max(steps) < failed_at
    config = config_lib.load(str(ROOT / "configs" / "tiny.py"))
    for step in steps:
        params = load_run(workdir, step, config=config)[1]
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params)), step
