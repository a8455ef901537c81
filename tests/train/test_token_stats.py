"""Log-probabilities and entropies computed a chunk of positions at a time equal the unchunked
computation, in value and gradient: in token_stats itself, in the SFT loss, and in the RL
update's log-probs and entropies (packed rows, masked positions, lengths the chunk does not
divide), and the jitted steps on a sharded mesh give the same figures either way."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax.errors import ConfigError
from t1jax.model import ModelConfig, forward, init_params, logits_from_hidden
from t1jax.train.rl.update import BATCH_KEYS, make_score_fn, make_update_step, token_logprobs_and_entropy
from t1jax.train.sft_step import make_eval_loss, make_sft_step, masked_token_nll, sequence_loss
from t1jax.train.state import layout_from_config
from t1jax.train.token_stats import chunk_length, logits_stats, token_stats

# float32 rounding: the chunks run the same operations on fewer rows
CLOSE = {"rtol": 2e-5, "atol": 2e-6}
MODEL = ModelConfig(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=48)


def _close(actual, expected):
    jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), **CLOSE), actual, expected)


def test_chunk_length_by_hand():
    assert chunk_length(0, 4) == 0  # no chunking
    assert chunk_length(1024, 4) == 256
    assert chunk_length(1000, 3) == 333
    assert chunk_length(2, 8) == 1  # at least one position
    assert chunk_length(64, 0) == 64


def _hidden_problem(B=3, T=13, D=8, V=37, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(B, T, D)).astype(np.float32)
    hidden[0, 2] *= 30.0  # extreme logits: a near one-hot distribution
    unembedding = rng.normal(size=(D, V)).astype(np.float32)
    targets = rng.integers(0, V, (B, T))
    return jnp.asarray(hidden), jnp.asarray(unembedding), jnp.asarray(targets, jnp.int32)


def test_unchunked_stats_match_numpy_reference():
    hidden, unembedding, targets = _hidden_problem()
    logits = np.asarray(hidden, np.float64) @ np.asarray(unembedding, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected_logp = np.take_along_axis(log_probs, np.asarray(targets)[..., None], -1)[..., 0]
    expected_entropy = -(np.exp(log_probs) * log_probs).sum(-1)
    logp, entropy = token_stats(hidden, unembedding, targets, 0)
    np.testing.assert_allclose(logp, expected_logp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(entropy, expected_entropy, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk_len", [0, 1, 4, 5, 12, 13, 50])
def test_chunked_stats_equal_full_logits_in_value_and_gradient(chunk_len):
    """Against automatic differentiation of the full logits (the unchunked computation).
    T = 13: chunks of 4, 5 and 12 leave a partial last chunk; 0, 13 and 50 are one chunk."""
    hidden, unembedding, targets = _hidden_problem()
    rng = np.random.default_rng(1)
    mask = jnp.asarray(rng.integers(0, 2, targets.shape), jnp.float32)  # masked positions get no gradient
    weight = jnp.asarray(rng.normal(size=targets.shape), jnp.float32)

    def chunked(hidden, unembedding):
        return token_stats(hidden, unembedding, targets, chunk_len)

    def full(hidden, unembedding):
        return logits_stats(logits_from_hidden(hidden, unembedding), targets)

    def values_and_grads(stats_fn):
        def loss(hidden, unembedding):
            logp, entropy = stats_fn(hidden, unembedding)
            return jnp.sum((weight * logp - 0.3 * entropy) * mask)

        return jax.jit(lambda *a: (stats_fn(*a), jax.grad(loss, argnums=(0, 1))(*a)))(hidden, unembedding)

    (logp, entropy), grads = values_and_grads(chunked)
    (ref_logp, ref_entropy), ref_grads = values_and_grads(full)
    assert logp.shape == entropy.shape == targets.shape
    _close((logp, entropy), (ref_logp, ref_entropy))
    _close(grads, ref_grads)
    masked_rows = np.asarray(mask)[..., None] == 0
    assert np.all(np.where(masked_rows, np.asarray(grads[0]), 0.0) == 0.0)
    assert np.abs(np.asarray(grads[0])).max() > 0.1 and np.abs(np.asarray(grads[1])).max() > 0.1
    no_entropy = token_stats(hidden, unembedding, targets, chunk_len, with_entropy=False)
    assert no_entropy[1] is None
    _close(no_entropy[0], ref_logp)


def _packed_batch():
    """Two rows of 12 tokens: row 0 packs sequences of 5 and 4 tokens and 3 of padding, row 1
    holds one sequence of 12."""
    rng = np.random.default_rng(2)
    tokens = rng.integers(1, MODEL.vocab_size, (2, 12)).astype(np.int32)
    segments = np.array([[1] * 5 + [2] * 4 + [0] * 3, [1] * 12], np.int32)
    positions = np.array([[*range(5), *range(4), 0, 0, 0], list(range(12))], np.int32)
    loss_mask = np.array([[0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1]], np.int32)
    tokens[segments == 0] = 0
    return {"tokens": tokens, "segment_ids": segments, "positions": positions, "loss_mask": loss_mask}


def _full_logits(params, batch):
    """forward's logits for the packed batch: the unchunked computation the chunks must match."""
    tokens, positions, segments = batch["tokens"], batch["positions"], batch["segment_ids"]
    logits, _ = forward(MODEL, params, tokens[:, :-1], positions[:, :-1], segment_ids_BT=segments[:, :-1])
    return logits


def test_sft_loss_chunked_equals_the_full_logits_in_value_and_gradient():
    chunk_len = 3  # 11 predicted positions: 4 chunks, the last of 2
    params = init_params(MODEL, 0)
    batch = jax.tree.map(jnp.asarray, _packed_batch())
    segments = batch["segment_ids"]
    # the loss predicts within a segment only: loss_mask[:, 1:] where the segment continues
    mask = batch["loss_mask"][:, 1:] * (segments[:, 1:] == segments[:, :-1])

    def chunked(params):
        total, count = sequence_loss(MODEL, params, batch, chunk_len)
        return total / count, (total, count)

    def full(params):
        total, count = masked_token_nll(_full_logits(params, batch), batch["tokens"][:, 1:], mask)
        return total / count, (total, count)

    (_, (total, count)), grads = jax.jit(jax.value_and_grad(chunked, has_aux=True))(params)
    (_, (ref_total, ref_count)), ref_grads = jax.jit(jax.value_and_grad(full, has_aux=True))(params)
    assert float(count) == float(ref_count) == 12
    _close(total, ref_total)
    _close(grads, ref_grads)


def test_rl_logprobs_and_entropy_chunked_equal_the_full_logits_in_value_and_gradient():
    chunk_len = 5  # 11 predicted positions: 3 chunks, the last of 1
    params = init_params(MODEL, 1)
    batch = jax.tree.map(jnp.asarray, _packed_batch())
    response = batch["loss_mask"].astype(jnp.float32)

    def chunked(params):
        return token_logprobs_and_entropy(
            MODEL, params, batch["tokens"], batch["positions"], batch["segment_ids"], chunk_len
        )

    def full(params):
        # position t holds log p(token t) and the entropy of the distribution that predicts it
        logp, entropy = logits_stats(_full_logits(params, batch), batch["tokens"][:, 1:])
        return jnp.pad(logp, ((0, 0), (1, 0))), jnp.pad(entropy, ((0, 0), (1, 0)))

    def values_and_grads(stats_fn):
        def loss(params):
            logp, entropy = stats_fn(params)
            return jnp.sum((jnp.exp(logp) - 0.1 * entropy) * response)

        return jax.jit(lambda p: (stats_fn(p), jax.grad(loss)(p)))(params)

    (logp, entropy), grads = values_and_grads(chunked)
    (ref_logp, ref_entropy), ref_grads = values_and_grads(full)
    _close((logp, entropy), (ref_logp, ref_entropy))
    _close(grads, ref_grads)
    assert float(logp[0, 0]) == float(entropy[1, 0]) == 0.0 and float(entropy[0, 3]) > 0


def _rl_batch(rows=8, length=11):
    rng = np.random.default_rng(3)
    tokens = rng.integers(1, 64, (rows, length)).astype(np.int32)
    segments = np.ones((rows, length), np.int32)
    segments[::2, 6:] = 2  # even rows pack two sequences
    segments[1::4, 9:] = 0  # and some rows end in padding
    positions = np.zeros_like(tokens)
    for r in range(rows):
        for s in np.unique(segments[r]):
            where = segments[r] == s
            positions[r, where] = np.arange(where.sum())
    response = (positions >= 2) & (segments > 0)
    return {
        "tokens": np.where(segments > 0, tokens, 0),
        "positions": positions,
        "segment_ids": segments,
        "response": response,
        "old_logp": np.where(response, -4.1 + rng.normal(size=tokens.shape) * 0.2, 0).astype(np.float32),
        "ref_logp": np.where(response, -4.2 + rng.normal(size=tokens.shape) * 0.2, 0).astype(np.float32),
        "advantage": np.where(response, rng.normal(size=(rows, 1)), 0).astype(np.float32),
        "loss_weight": (response / response.sum()).astype(np.float32),
    }


def _scan_lengths(jaxpr) -> list[int]:
    """The lengths of every lax.scan in a jaxpr, nested ones included."""
    lengths = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            lengths.append(eqn.params["length"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    lengths += _scan_lengths(inner)
    return lengths


def _same_figures(make, args, chunk_tokens, chunks):
    """make(chunk_tokens) and make(0) give the same outputs; the first scans `chunks` chunks of
    positions (forward and backward), the second none (a scan of 2 is the micro-batches')."""
    chunked, whole = make(chunk_tokens), make(0)
    assert _scan_lengths(chunked.trace(*args()).jaxpr.jaxpr).count(chunks) >= 1
    assert set(_scan_lengths(whole.trace(*args()).jaxpr.jaxpr)) <= {2}
    _close(chunked(*args()), whole(*args()))


def test_jitted_steps_on_a_mesh_give_the_same_figures_chunked_and_not():
    """Mesh (2, 2, 2): 8 rows are 2 rows per device, 1 per micro-batch of 2; a chunk of N tokens
    per device is N // rows positions, and 10 predicted positions leave a partial last chunk."""
    overrides = {**SMALL_MODEL, **mesh_overrides(2, 2, 2), "rl.entropy_coef": 0.1, "rl.kl_loss_coef": 0.05}
    config = config_lib.load(None, overrides)
    layout = layout_from_config(config, 10)
    batch = _rl_batch()
    rl_batch = {k: batch[k] for k in BATCH_KEYS}
    params = layout.init(0).params
    score_args = (params, batch["tokens"], batch["positions"], batch["segment_ids"])
    _same_figures(lambda n: make_score_fn(layout, n), lambda: score_args, 6, chunks=4)  # 3 positions
    update = lambda n: make_update_step(layout, config.rl, 2, logits_chunk_tokens=n)  # noqa: E731
    _same_figures(update, lambda: (layout.init(0), rl_batch), 3, chunks=4)  # 3 positions
    _, metrics = update(0)(layout.init(0), rl_batch)
    assert float(metrics["entropy"]) > 0 and float(metrics["clip_fraction"]) > 0

    sft_batch = {"tokens": batch["tokens"], "loss_mask": batch["response"].astype(np.int32)}
    sft_batch.update(segment_ids=batch["segment_ids"], positions=batch["positions"])
    _same_figures(lambda n: make_eval_loss(layout, n), lambda: (params, sft_batch), 4, chunks=5)  # 2 positions
    sft = lambda n: make_sft_step(layout, lambda step: 1e-3, 2, logits_chunk_tokens=n)  # noqa: E731
    _same_figures(sft, lambda: (layout.init(0), sft_batch), 4, chunks=3)  # 4 positions


def test_a_negative_chunk_size_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.logits_chunk_tokens must be >= 0, got -1"):
        config_lib.load(None, {"optim.logits_chunk_tokens": -1})
