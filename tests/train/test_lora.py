"""LoRA training (model.lora_rank > 0): only the adapters are differentiated and have optimizer
state, the base weights stay bit for bit what they were, SFT lowers the loss and RL raises the
reward of a toy problem; the anchor is the base with adapters of its own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax.errors import ConfigError
from t1jax.model import ModelConfig, init_params, lora
from t1jax.model.params import get_path
from t1jax.sampling import Sample, Sampler
from t1jax.train.objectives import rloo_advantages
from t1jax.train.rl.batch import build_batch, loss_weights, row_length
from t1jax.train.rl.rollout import RolloutGroups
from t1jax.train.rl.update import BATCH_KEYS, make_anchor_update, make_merge, make_score_fn, make_update_step
from t1jax.train.sft_step import make_sft_step, sequence_loss
from t1jax.train.state import layout_from_config

LORA = {"model.lora_rank": 4, "model.lora_alpha": 8.0}
# the toy RL problem below needs the output layer to move: the (tied) embedding is adapted too
WITH_EMBEDDING = {"model.lora_targets": r"attention\.(q|k|v|o)$|mlp\.(gate|up|down)$|^embed$"}


def _layout(overrides: dict):
    config = config_lib.load(None, {**SMALL_MODEL, **mesh_overrides(2, 2, 2), "optim.warmup_steps": 0, **overrides})
    return config, layout_from_config(config, 100)


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _float_sizes(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating))


def _sft_batch(rows=8, length=17, vocab=64, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, (rows, length)).astype(np.int32)
    mask = np.zeros((rows, length), np.int32)
    mask[:, length // 2 :] = 1
    return {"tokens": tokens, "loss_mask": mask}


def test_adapter_gradients_are_the_chain_rule_of_the_weights_gradients():
    """d loss / d a = s * dW @ b^T and d loss / d b = s * a^T @ dW (dW: the gradient of the merged
    weight, each side's axes flattened), worked out with numpy from the full model's gradient."""
    cfg = ModelConfig.from_config(config_lib.load(None, {**SMALL_MODEL, **LORA}).model)
    base = init_params(lora.base_model(cfg), seed=0)
    adapters = jax.tree.map(
        lambda x: 0.1 * jax.random.normal(jax.random.PRNGKey(x.size), x.shape), lora.init_adapters(cfg, 1)
    )
    batch = {k: jnp.asarray(v) for k, v in _sft_batch().items()}

    def loss(params):
        return sequence_loss(cfg, params, batch)[0]

    merged = lora.merge(cfg, base, adapters)
    weight_grads = jax.grad(loss)(merged)
    adapter_grads = jax.grad(lambda ad: loss(lora.merge(cfg, base, ad)))(adapters)
    s = cfg.lora_alpha / cfg.lora_rank
    for t in lora.targets(cfg):
        dw = np.asarray(get_path(weight_grads, t.path), np.float64)
        ab, grads = get_path(adapters, t.path), get_path(adapter_grads, t.path)
        a = np.asarray(ab["a"], np.float64).reshape(-1, cfg.lora_rank)
        b = np.asarray(ab["b"], np.float64).reshape(cfg.lora_rank, -1)
        dw = dw.reshape(a.shape[0], b.shape[1])
        np.testing.assert_allclose(grads["a"].reshape(a.shape), s * dw @ b.T, rtol=1e-4, atol=1e-7, err_msg=t.name)
        np.testing.assert_allclose(grads["b"].reshape(b.shape), s * a.T @ dw, rtol=1e-4, atol=1e-7, err_msg=t.name)


def test_lora_sft_trains_only_the_adapters_and_lowers_the_loss():
    config, layout = _layout({**LORA, "optim.learning_rate": 1e-2})
    cfg = layout.model_config
    state = layout.init(0)
    # what is trained, differentiated and has Adam's two moments is the adapters, nothing else
    assert jax.tree.structure(state.params) == jax.tree.structure(lora.abstract_adapters(cfg))
    num_adapters = lora.num_adapter_params(cfg)
    assert _float_sizes(state.params) == num_adapters < cfg.num_params() // 4
    assert _float_sizes(state.opt_state) == 2 * num_adapters
    base = layout.init_params(1)
    before = _host(base)
    step = make_sft_step(layout, lambda _: 1e-2, grad_accum_steps=2)
    batch = _sft_batch()
    losses = []
    for _ in range(15):
        state, metrics = step(state, base, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0], losses
    # the base is an argument of the step, not donated: still alive and unchanged bit for bit
    assert not any(x.is_deleted() for x in jax.tree.leaves(base))
    jax.tree.map(np.testing.assert_array_equal, _host(base), before)
    assert all(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(state.params))  # b has moved off 0


def test_optim_trainable_and_lora_exclude_each_other():
    with pytest.raises(ConfigError, match="exclude each other"):
        _layout({**LORA, "optim.trainable": "blocks.1"})


TARGET = 7  # the toy reward: 1 for each sample whose first generated token is TARGET


class _Breakdown:
    """Rewards of the toy problem: no penalties, reward = correctness."""

    def __init__(self, correct, truncated):
        self.correct, self.reward, self.truncated = correct, correct.astype(np.float32), truncated
        self.repetitive = self.garbage = np.zeros_like(correct)


def toy_rl(overrides: dict, steps: int = 30):
    """The toy RL problem of tests/train/rl/test_update.py, with or without LoRA: returns (reward
    per step, the base before, the base after) (bases None without LoRA)."""
    config, layout = _layout({"rl.entropy_coef": 0.0, **overrides})
    state = layout.init(0)
    base = layout.init_params(0) if layout.lora else None
    frozen = () if base is None else (base,)
    before = _host(base)
    step, score = make_update_step(layout, config.rl), make_score_fn(layout)
    merge = make_merge(layout) if layout.lora else None
    P, K = 4, 8
    sampler = Sampler(layout.model_config, Sample(temperature=1.0), max_new_tokens=3, num_samples=K, layout=layout)
    prompts = [[2, 10 + i] for i in range(P)]
    rewards = []
    for i in range(steps):
        weights = state.params if merge is None else merge(state.params, base)
        out = sampler(weights, prompts, jax.random.key(i))
        correct = out.tokens[:, 0] == TARGET
        rewards.append(float(correct.mean()))
        groups = RolloutGroups.from_samples(prompts, out, _Breakdown(correct, out.truncated), K)
        batch = build_batch(groups, 0, 2 * row_length(groups), pack=True, row_multiple=8)
        arrays = (batch["tokens"], batch["positions"], batch["segment_ids"])
        batch["ref_logp"] = np.asarray(score(state.params, *frozen, *arrays))
        per_sample = np.asarray(rloo_advantages(groups.reward)).reshape(-1)
        batch["advantage"] = np.where(batch["sequence"] >= 0, per_sample[batch["sequence"]], 0).astype(np.float32)
        batch["loss_weight"] = loss_weights(batch, "token_mean")
        state, metrics = step(state, *frozen, {k: batch[k] for k in BATCH_KEYS})
        assert np.isfinite(float(metrics["loss"])) and float(metrics["clip_fraction"]) == 0.0
    return rewards, before, _host(base)


LORA_RL = {**LORA, **WITH_EMBEDDING, "optim.learning_rate": 1e-2}


def test_lora_rl_raises_the_toy_reward_and_leaves_the_base_alone():
    rewards, before, after = toy_rl(LORA_RL)
    early, late = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert late > early + 0.3 and late > 0.5, rewards
    jax.tree.map(np.testing.assert_array_equal, after, before)


@pytest.mark.long
def test_lora_rl_learns_like_full_rl():
    """Over the same 30 steps LoRA (rank 4, learning rate 1e-2) ends at least as high as full RL
    (3e-3, test_update.py's): 2026-12 figures, last 5 steps' mean reward 0.98 (LoRA) vs 0.73 (full)."""
    lora_rewards, _, _ = toy_rl(LORA_RL)
    full_rewards, _, _ = toy_rl({"optim.learning_rate": 3e-3})
    assert np.mean(lora_rewards[-5:]) >= np.mean(full_rewards[-5:]) - 0.05, (lora_rewards, full_rewards)


def test_the_anchor_is_the_base_with_adapters_of_its_own():
    """The LoRA anchor moves its adapters toward the policy's (mu = 0.5: halfway), and its
    log-probs are those of the base with its adapters merged in, scored as a full model."""
    config, layout = _layout(LORA)
    _, full = _layout({})
    base = layout.init_params(0)
    policy = jax.tree.map(lambda x: x + 0.05, layout.init(1).params)
    anchor = layout.init(2).params
    expected = jax.tree.map(lambda a, p: 0.5 * np.asarray(a) + 0.5 * np.asarray(p), _host(anchor), _host(policy))
    moved = make_anchor_update(layout, 0.5)(anchor, policy)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), _host(moved), expected)
    batch = build_batch_for_scoring()
    scores = make_score_fn(layout)(moved, base, *batch)
    merged = lora.merge(layout.model_config, _host(base), expected)
    reference = make_score_fn(full)(merged, *batch)
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-5)


def build_batch_for_scoring():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 64, (8, 12)).astype(np.int32)
    positions = np.tile(np.arange(12, dtype=np.int32), (8, 1))
    segments = np.ones((8, 12), np.int32)
    return tokens, positions, segments
