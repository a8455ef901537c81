"""The jitted RL update on a toy problem where learning is certain, and the anchor update."""

import jax
import numpy as np
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax.sampling import Sample, Sampler
from t1jax.train.objectives import rloo_advantages
from t1jax.train.rl.batch import build_batch, loss_weights, row_length
from t1jax.train.rl.rollout import RolloutGroups
from t1jax.train.rl.update import BATCH_KEYS, make_anchor_update, make_score_fn, make_update_step
from t1jax.train.state import layout_from_config

TARGET = 7  # the toy reward: 1 for each sample whose first generated token is TARGET


class _Breakdown:
    """Rewards of the toy problem: no penalties, reward = correctness."""

    def __init__(self, correct, truncated):
        self.correct, self.reward, self.truncated = correct, correct.astype(np.float32), truncated
        self.repetitive = self.garbage = np.zeros_like(correct)


def _setup():
    config = config_lib.load(
        None,
        {
            **SMALL_MODEL,
            **mesh_overrides(2, 2, 2),
            "rl.entropy_coef": 0.0,
            "optim.learning_rate": 3e-3,
            "optim.warmup_steps": 0,
        },
    )
    return config, layout_from_config(config, 100)


def test_toy_rl_raises_the_reward():
    config, layout = _setup()
    state = layout.init(0)
    step = make_update_step(layout, config.rl)
    score = make_score_fn(layout)
    P, K = 4, 8
    sampler = Sampler(layout.model_config, Sample(temperature=1.0), max_new_tokens=3, num_samples=K, layout=layout)
    prompts = [[2, 10 + i] for i in range(P)]
    rewards = []
    for i in range(30):
        out = sampler(state.params, prompts, jax.random.key(i))
        correct = out.tokens[:, 0] == TARGET
        rewards.append(correct.mean())
        groups = RolloutGroups.from_samples(prompts, out, _Breakdown(correct, out.truncated), K)
        batch = build_batch(groups, 0, 2 * row_length(groups), pack=True, row_multiple=8)
        batch["ref_logp"] = np.asarray(score(state.params, batch["tokens"], batch["positions"], batch["segment_ids"]))
        per_sample = np.asarray(rloo_advantages(groups.reward)).reshape(-1)
        batch["advantage"] = np.where(batch["sequence"] >= 0, per_sample[batch["sequence"]], 0).astype(np.float32)
        batch["loss_weight"] = loss_weights(batch, "token_mean")
        state, metrics = step(state, {k: batch[k] for k in BATCH_KEYS})
        assert np.isfinite(float(metrics["loss"]))
    early, late = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert late > early + 0.3 and late > 0.5, rewards


def test_anchor_update_reset_and_frozen():
    _, layout = _setup()
    policy = layout.init(0).params
    anchor = layout.init(1).params
    reset = make_anchor_update(layout, 0.0)(jax.tree.map(lambda x: x.copy(), anchor), policy)
    jax.tree.map(np.testing.assert_array_equal, reset, policy)
    frozen = make_anchor_update(layout, 1.0)(jax.tree.map(lambda x: x.copy(), anchor), policy)
    jax.tree.map(np.testing.assert_array_equal, frozen, anchor)
