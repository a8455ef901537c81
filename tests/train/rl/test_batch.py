"""Packed RL batches (rl.pack): every sample whole in its rows, and the same update as one
sample per row: the same per-sample KL, advantages, loss and updated params."""

import jax
import numpy as np
import pytest
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax.model import forward
from t1jax.train.objectives import kl_normalized_rewards, policy_loss, rloo_advantages, token_kl
from t1jax.train.rl.batch import build_batch, loss_weights, row_length, sequence_kl, token_advantages
from t1jax.train.rl.rollout import RolloutGroups
from t1jax.train.rl.update import BATCH_KEYS, make_score_fn, make_update_step
from t1jax.train.state import layout_from_config

P, K, M = 3, 4, 12
# Adam's first step moves every weight by about lr = 1e-2 times the sign of its gradient, so a
# real difference in a gradient shows up at 1e-2; float32 rounding of near-zero gradients at 1e-5.
PARAMS_TOLERANCE = dict(rtol=0, atol=1e-5)


def _groups(seed=0) -> RolloutGroups:
    """Prompts of 3-9 tokens and responses of 1-M tokens with made-up rewards and old logprobs."""
    rng = np.random.default_rng(seed)
    prompts = [list(rng.integers(2, 64, rng.integers(3, 10))) for _ in range(P)]
    lengths = rng.integers(1, M + 1, (P, K))
    tokens = rng.integers(2, 64, (P, K, M)).astype(np.int32)
    tokens[np.arange(M) >= lengths[..., None]] = 0
    flags = np.zeros((P, K), bool)
    return RolloutGroups(
        prompts=prompts,
        tokens=tokens,
        lengths=lengths,
        logprobs=np.where(np.arange(M) < lengths[..., None], -rng.uniform(0.5, 4.0, (P, K, M)), 0).astype(np.float32),
        correct=rng.random((P, K)) < 0.5,
        reward=rng.choice([-1.0, 0.0, 1.0], (P, K)).astype(np.float32),
        truncated=flags,
        repetitive=flags,
        garbage=flags,
    )


def _sequence(groups, i):
    prompt, n = groups.prompts[i // K], groups.lengths[i // K, i % K]
    return np.concatenate([prompt, groups.tokens[i // K, i % K, :n]]), len(prompt), n


def test_packed_rows_hold_every_sample_whole():
    groups = _groups()
    row_len = 2 * row_length(groups)
    batch = build_batch(groups, pad_id=1, row_len=row_len, pack=True, row_multiple=4)
    unpacked = build_batch(groups, pad_id=1, row_len=row_length(groups), min_rows=P * K)
    assert len(batch["tokens"]) % 4 == 0 and len(batch["tokens"]) < len(unpacked["tokens"]) == P * K
    for i in range(P * K):
        tokens, prompt_len, n = _sequence(groups, i)
        (row,) = np.unique(np.nonzero(batch["sequence"] == i)[0])  # one row
        where = np.flatnonzero(batch["sequence"][row] == i)
        assert np.all(np.diff(where) == 1)  # contiguous
        np.testing.assert_array_equal(batch["tokens"][row, where], tokens)
        np.testing.assert_array_equal(batch["positions"][row, where], np.arange(len(tokens)))
        (segment,) = np.unique(batch["segment_ids"][row, where])
        assert segment > 0 and np.sum(batch["segment_ids"][row] == segment) == len(tokens)
        np.testing.assert_array_equal(batch["response"][row, where], np.arange(len(tokens)) >= prompt_len)
        np.testing.assert_array_equal(batch["old_logp"][row, where[prompt_len:]], groups.logprobs[i // K, i % K, :n])
        # unpacked: row i is sample i from column 0
        np.testing.assert_array_equal(unpacked["tokens"][i, : len(tokens)], tokens)
        np.testing.assert_array_equal(unpacked["sequence"][i] == i, np.arange(row_length(groups)) < len(tokens))
    padding = batch["sequence"] < 0
    assert np.all(batch["tokens"][padding] == 1) and not batch["segment_ids"][padding].any()
    assert not batch["response"][padding].any() and batch["response"].sum() == groups.lengths.sum()


def test_a_sample_longer_than_a_row_is_an_error():
    with pytest.raises(ValueError, match="does not fit rows of 5"):
        build_batch(_groups(), 0, row_len=5, pack=True)


def test_loss_weights_by_hand():
    batch = {
        "response": np.array([[0, 1, 1, 0, 1, 1, 1], [0, 0, 1, 0, 0, 0, 0]], bool),
        "sequence": np.array([[0, 0, 0, 1, 1, 1, 1], [2, 2, 2, -1, -1, -1, -1]]),
    }
    np.testing.assert_allclose(loss_weights(batch, "token_mean"), batch["response"] / 6.0)
    # seq_mean: 1 / (the sample's response tokens x 3 samples)
    expected = np.array([[0, 1 / 6, 1 / 6, 0, 1 / 9, 1 / 9, 1 / 9], [0, 0, 1 / 3, 0, 0, 0, 0]])
    np.testing.assert_allclose(loss_weights(batch, "seq_mean"), expected, rtol=1e-6)
    assert not loss_weights({k: v[:, :1] for k, v in batch.items()}, "seq_mean").any()


def _setup(grad_accum, aggregation):
    overrides = {**SMALL_MODEL, **mesh_overrides(2, 2, 2), "optim.warmup_steps": 0, "optim.learning_rate": 1e-2}
    config = config_lib.load(None, {**overrides, "rl.aggregation": aggregation, "rl.entropy_coef": 0.1})
    return config, layout_from_config(config, 10)


def _prepared(groups, layout, anchor, config, **layout_args):
    batch = build_batch(groups, 0, **layout_args)
    ref_logp = np.asarray(make_score_fn(layout)(anchor, batch["tokens"], batch["positions"], batch["segment_ids"]))
    kl_PK = sequence_kl(groups, batch, ref_logp, config.rl.kl_estimator)
    advantage = token_advantages(batch, rloo_advantages(kl_normalized_rewards(groups.reward, kl_PK, 0.5)))
    batch.update(ref_logp=ref_logp, advantage=advantage, loss_weight=loss_weights(batch, config.rl.aggregation))
    return batch, kl_PK


@pytest.mark.slow
@pytest.mark.parametrize("grad_accum,aggregation", [(1, "token_mean"), (2, "seq_mean")])
def test_packed_update_equals_one_sample_per_row(grad_accum, aggregation):
    config, layout = _setup(grad_accum, aggregation)
    groups = _groups(1)
    anchor = layout.init(1).params
    multiple = 4 * grad_accum  # 4 batch shards on the (2, 2, 2) mesh
    unpacked, kl_unpacked = _prepared(
        groups, layout, anchor, config, row_len=row_length(groups), min_rows=P * K, row_multiple=multiple
    )
    packed, kl_packed = _prepared(
        groups, layout, anchor, config, row_len=2 * row_length(groups), pack=True, row_multiple=multiple
    )
    assert len(packed["tokens"]) < len(unpacked["tokens"])

    # Independent reference: each sample alone in a row from position 0, then the objectives'
    # functions (the padding after a sample is causally invisible to it).
    policy = layout.init(0).params
    sequences = [_sequence(groups, i) for i in range(P * K)]
    rows = np.zeros((P * K, max(len(t) for t, _, _ in sequences)), np.int32)
    for i, (tokens, _, _) in enumerate(sequences):
        rows[i, : len(tokens)] = tokens
    log_probs = {
        id(params): np.asarray(jax.nn.log_softmax(forward(layout.model_config, params, rows[:, :-1])[0]))
        for params in (policy, anchor)
    }
    logp = np.zeros((P * K, M), np.float32)
    ref = np.zeros((P * K, M), np.float32)
    old = np.zeros((P * K, M), np.float32)
    mask = np.zeros((P * K, M), np.float32)
    for i, (tokens, prompt_len, n) in enumerate(sequences):
        for params, out in ((policy, logp), (anchor, ref)):
            row = log_probs[id(params)][i]
            out[i, :n] = row[np.arange(prompt_len - 1, len(tokens) - 1), tokens[prompt_len:]]
        old[i, :n], mask[i, :n] = groups.logprobs[i // K, i % K, :n], 1
    kl_reference = np.sum(np.asarray(token_kl(old, ref, config.rl.kl_estimator)) * mask, axis=-1).reshape(P, K)
    np.testing.assert_allclose(kl_packed, kl_reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kl_unpacked, kl_reference, rtol=1e-4, atol=1e-5)
    per_sample = unpacked["advantage"][np.arange(P * K), 0]  # column 0 is each sample's first token
    expected_pg = policy_loss(logp, old, per_sample, mask, config.rl.clip_low, config.rl.clip_high, aggregation)

    results = []
    for batch in (unpacked, packed):
        step = make_update_step(layout, config.rl, grad_accum)
        state, metrics = step(layout.init(0), {k: batch[k] for k in BATCH_KEYS})
        results.append((jax.tree.map(np.asarray, state.params), {k: float(v) for k, v in metrics.items()}))
    (params_u, metrics_u), (params_p, metrics_p) = results
    np.testing.assert_allclose(metrics_u["pg_loss"], float(expected_pg), rtol=1e-4)
    for name in ("loss", "pg_loss", "entropy", "kl_to_anchor", "clip_fraction", "grad_norm"):
        np.testing.assert_allclose(metrics_p[name], metrics_u[name], rtol=1e-4, atol=1e-6, err_msg=name)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **PARAMS_TOLERANCE), params_p, params_u)
    assert not np.allclose(params_u["embed"], np.asarray(layout.init(0).params["embed"]))  # it moved
