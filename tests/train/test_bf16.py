"""bfloat16 parameters and computation against float32 on a small model, and the rounding that
keeps small updates of bfloat16 weights from vanishing.

Tolerances come from bfloat16's 8 significant bits: one rounding is off by at most
U = 2**-9 of the value (half the spacing 2**-8 of the numbers in [1, 2)). A loss or an entropy is
a float32 mean over many tokens whose bf16 rounding errors mostly cancel; it may differ from
float32 by LOSS_RTOL = 4 U, a few roundings of the result itself (measured: 7e-5). A single
token's log-prob is a difference of large numbers and varies more: LOGP_RTOL = 8 U of the largest
|log p| (measured: ~1 U). A gradient is compared by direction: cosine similarity with float32's at
least GRAD_COSINE (measured: 0.99985).
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_runner import ROOT

from t1jax import config as config_lib
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.sampling import Sample, Sampler
from t1jax.train.objectives import rloo_advantages
from t1jax.train.optimizer import apply_updates, make_optimizer, stochastic_round, uniform_hash
from t1jax.train.rl.batch import build_batch, loss_weights, row_length
from t1jax.train.rl.rollout import RolloutGroups
from t1jax.train.rl.update import (
    BATCH_KEYS,
    make_anchor_update,
    make_score_fn,
    make_update_step,
    token_logprobs_and_entropy,
)
from t1jax.train.sft_step import make_eval_loss, make_sft_step, sequence_loss
from t1jax.train.state import layout_from_config

U = 2.0**-9  # bfloat16's unit roundoff
LOSS_RTOL = 4 * U
GRAD_COSINE = 0.999
LOGP_RTOL = 8 * U  # a token's log-prob, relative to the largest |log p| (measured: ~1 U)
MODEL = {
    "model.vocab_size": 256,
    "model.d_model": 64,
    "model.num_layers": 2,
    "model.num_heads": 4,
    "model.num_kv_heads": 2,
    "model.mlp_dim": 128,
}
# (param_dtype, compute_dtype) pairs against float32's
BF16_SETTINGS = [("float32", "bfloat16"), ("bfloat16", "bfloat16")]
# the same settings with float32 weights run with the long tests (bf16 weights are the harder case)
BF16_SETTINGS_QUICK = [pytest.param("float32", "bfloat16", marks=pytest.mark.long), ("bfloat16", "bfloat16")]


def _layout(param_dtype="float32", compute_dtype="float32", **overrides):
    config = config_lib.load(
        None,
        {
            **MODEL,
            "model.param_dtype": param_dtype,
            "model.compute_dtype": compute_dtype,
            "mesh.data": 1,
            "mesh.fsdp": 1,
            "mesh.tensor": 1,
            "optim.warmup_steps": 0,
            **overrides,
        },
    )
    return config, layout_from_config(config, 10, jax.devices()[:1])


def _state(layout, params32):
    """A fresh state of `layout` holding copies of the float32 reference's weights in its own dtype
    (copies: the train steps donate the state)."""
    state = layout.init(0)
    return state.replace(params=jax.tree.map(lambda p, x: jnp.array(x, p.dtype), state.params, params32))


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float32).ravel() for x in jax.tree.leaves(tree)])


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _sft_batch():
    rng = np.random.default_rng(0)
    mask = np.ones((4, 33), np.int32)
    mask[:, :8] = 0  # the prompt
    return {"tokens": rng.integers(1, 256, (4, 33)).astype(np.int32), "loss_mask": mask}


@pytest.mark.parametrize("param_dtype,compute_dtype", BF16_SETTINGS)
def test_sft_loss_and_gradients_in_bf16_match_float32(param_dtype, compute_dtype):
    batch = _sft_batch()

    def loss_and_grads(layout, params):
        def mean_nll(p):
            nll, count = sequence_loss(layout.model_config, p, batch, chunk_len=8)
            return nll / count

        return jax.jit(jax.value_and_grad(mean_nll))(params)

    _, reference = _layout()
    params32 = reference.init(0).params
    loss32, grads32 = loss_and_grads(reference, params32)
    _, layout = _layout(param_dtype, compute_dtype)
    loss, grads = loss_and_grads(layout, _state(layout, params32).params)
    assert loss.dtype == jnp.float32
    assert abs(float(loss) / float(loss32) - 1) < LOSS_RTOL, (float(loss), float(loss32))
    assert _cosine(_flat(grads), _flat(grads32)) > GRAD_COSINE
    for g, g32 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32)):
        assert g.dtype == jnp.dtype(param_dtype)  # a parameter's gradient has its dtype
        assert _cosine(np.ravel(np.asarray(g, np.float32)), np.ravel(g32)) > 0.99, g.shape


@pytest.mark.parametrize("param_dtype,compute_dtype", BF16_SETTINGS_QUICK)
def test_sft_step_in_bf16_matches_float32(param_dtype, compute_dtype):
    """The jitted step (gradient accumulation over 2 micro-batches, AdamW, the rounding of the new
    weights): float32 metrics near float32's, float32 moments, weights kept in their dtype."""
    batch = _sft_batch()

    def one_step(layout, params32):
        step = make_sft_step(layout, lambda _: 1e-3, grad_accum_steps=2, logits_chunk_tokens=32)
        return step(_state(layout, params32), batch)

    _, reference = _layout()
    params32 = reference.init(0).params
    _, metrics32 = one_step(reference, params32)
    _, layout = _layout(param_dtype, compute_dtype)
    state, metrics = one_step(layout, params32)
    for key in ("loss", "grad_norm", "update_norm"):
        assert metrics[key].dtype == jnp.float32 and np.isfinite(metrics[key]), key
    assert abs(float(metrics["loss"]) / float(metrics32["loss"]) - 1) < LOSS_RTOL
    assert abs(float(metrics["grad_norm"]) / float(metrics32["grad_norm"]) - 1) < 1e-2
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(param_dtype)}
    moments = [x for x in jax.tree.leaves(state.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert moments and {x.dtype for x in moments} == {jnp.dtype(jnp.float32)}


def _rl_batch(layout, params):
    """An RL batch sampled from `params` (the float32 model), with advantages of a toy reward and
    anchor log-probs a little off the policy's."""
    P, K = 4, 4
    sampler = Sampler(layout.model_config, Sample(temperature=1.0), max_new_tokens=6, num_samples=K, layout=layout)
    prompts = [[2, 10 + i, 20 + i] for i in range(P)]
    out = sampler(params, prompts, jax.random.key(0))
    correct = out.tokens[:, 0] % 2 == 0
    none = np.zeros_like(correct)
    rewards = types.SimpleNamespace(
        correct=correct, reward=correct.astype(np.float32), truncated=out.truncated, repetitive=none, garbage=none
    )
    groups = RolloutGroups.from_samples(prompts, out, rewards, K)
    batch = build_batch(groups, 0, row_length(groups), pack=True, row_multiple=2)
    score = make_score_fn(layout)
    ref = np.asarray(score(params, batch["tokens"], batch["positions"], batch["segment_ids"]))
    noise = np.random.default_rng(1).normal(0, 0.2, ref.shape).astype(np.float32)
    batch["ref_logp"] = np.where(batch["response"], ref + noise, 0.0).astype(np.float32)
    per_sample = np.asarray(rloo_advantages(groups.reward)).reshape(-1)
    batch["advantage"] = np.where(batch["sequence"] >= 0, per_sample[batch["sequence"]], 0).astype(np.float32)
    batch["loss_weight"] = loss_weights(batch, "token_mean")
    return {k: batch[k] for k in BATCH_KEYS}


@pytest.mark.parametrize("param_dtype,compute_dtype", BF16_SETTINGS_QUICK)
def test_rl_update_step_in_bf16_is_finite_and_near_float32(param_dtype, compute_dtype):
    overrides = {"rl.kl_loss_coef": 0.1, "rl.entropy_coef": 0.01}
    config32, reference = _layout(**overrides)
    params32 = reference.init(0).params
    batch = _rl_batch(reference, params32)
    _, metrics32 = make_update_step(reference, config32.rl, grad_accum_steps=2)(_state(reference, params32), batch)
    config, layout = _layout(param_dtype, compute_dtype, **overrides)
    state, metrics = make_update_step(layout, config.rl, grad_accum_steps=2)(_state(layout, params32), batch)
    for key, value in metrics.items():
        assert value.dtype == jnp.float32 and np.isfinite(value), key
    # the loss's terms, each on its own scale. The policy loss is a weighted mean (weights summing
    # to 1) of -A * ratio, and a ratio moves by about the log-prob's error: LOGP_RTOL of |log p|.
    assert abs(float(metrics["entropy"]) / float(metrics32["entropy"]) - 1) < LOSS_RTOL
    logp_scale = np.abs(np.where(batch["response"], batch["old_logp"], 0)).max()
    pg_tolerance = LOGP_RTOL * logp_scale * np.abs(batch["advantage"]).max()
    assert abs(float(metrics["pg_loss"] - metrics32["pg_loss"])) < pg_tolerance
    # k3 ~ (log-ratio)^2 / 2 with log-ratios of ~0.2 (the anchor's noise): a log-prob error e moves it
    # by ~2 e / 0.2 of itself
    assert abs(float(metrics["kl_to_anchor"]) / float(metrics32["kl_to_anchor"]) - 1) < 0.1
    assert abs(float(metrics["grad_norm"]) / float(metrics32["grad_norm"]) - 1) < 2e-2
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(param_dtype)}


@pytest.mark.parametrize("param_dtype,compute_dtype", [("float32", "float32"), *BF16_SETTINGS_QUICK])
def test_log_probs_are_float32_in_every_path_and_agree(param_dtype, compute_dtype):
    """The sampler's log pi_old, the anchor's scores, the update's log-probs and entropies, the SFT
    and validation losses: float32 whatever the model's dtypes. The sampler (cached decode) and the
    scorer (one forward pass) agree on the same tokens to float32 rounding in float32 and to a few
    bf16 roundings of a log-prob otherwise."""
    _, reference = _layout()
    params32 = reference.init(0).params
    config, layout = _layout(param_dtype, compute_dtype)
    params = _state(layout, params32).params
    sampler = Sampler(layout.model_config, Sample(temperature=1.0), max_new_tokens=8, num_samples=2, layout=layout)
    prompt = [2, 11, 12, 13]
    out = sampler(params, [prompt], jax.random.key(3))
    assert out.logprobs.dtype == np.float32
    tokens = np.array([prompt + list(out.tokens[0])], np.int32)
    positions = np.arange(tokens.shape[1], dtype=np.int32)[None]
    segments = np.ones_like(tokens)
    scores = make_score_fn(layout, logits_chunk_tokens=4)(params, tokens, positions, segments)
    logp, entropy = jax.jit(
        lambda p: token_logprobs_and_entropy(layout.model_config, p, tokens, positions, segments, chunk_len=4)
    )(params)
    assert scores.dtype == logp.dtype == entropy.dtype == jnp.float32
    n = int(out.lengths[0])
    difference = np.abs(np.asarray(scores)[0, len(prompt) : len(prompt) + n] - out.logprobs[0, :n])
    logp_scale = np.abs(out.logprobs[0, :n]).max()
    assert difference.max() < (1e-5 if compute_dtype == "float32" else LOGP_RTOL * logp_scale), difference
    nll, count = make_eval_loss(layout, logits_chunk_tokens=8)(params, _sft_batch())
    assert nll.dtype == count.dtype == jnp.float32 and np.isfinite(nll)


@pytest.mark.parametrize("moments_dtype", ["float32", "bfloat16"])
def test_bf16_params_get_moments_in_optim_moments_dtype(moments_dtype):
    _, layout = _layout("bfloat16", "bfloat16", **{"optim.moments_dtype": moments_dtype})
    state = layout.init(0)
    moments = [x for x in jax.tree.leaves(state.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    # mu and nu for every parameter, in the configured dtype; the abstract state (a restore's target) agrees
    assert len(moments) == 2 * len(jax.tree.leaves(state.params))
    assert {x.dtype for x in moments} == {jnp.dtype(moments_dtype)}
    abstract = [x for x in jax.tree.leaves(layout.abstract_state().opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert [x.dtype for x in abstract] == [x.dtype for x in moments]


def test_the_optimizer_computes_in_float32_whatever_the_dtypes():
    """bfloat16 parameters and gradients with float32 moments: the very updates AdamW gives for
    their float32 values; with bfloat16 moments, the same to the moments' rounding."""
    settings = {"optim.warmup_steps": 0, "optim.weight_decay": 0.1}
    optim = config_lib.load(None, settings).optim
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.normal(size=(64, 32)), jnp.bfloat16),
        "b": jnp.asarray(rng.normal(size=64), jnp.bfloat16),
    }
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.bfloat16), params) for _ in range(3)]
    f32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)  # noqa: E731
    tx = make_optimizer(optim, 10)
    tx_low = make_optimizer(config_lib.load(None, {**settings, "optim.moments_dtype": "bfloat16"}).optim, 10)
    state, state32, state_low = tx.init(params), tx.init(f32(params)), tx_low.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        updates32, state32 = tx.update(f32(g), state32, f32(params))
        updates_low, state_low = tx_low.update(g, state_low, params)
        jax.tree.map(np.testing.assert_array_equal, updates, updates32)
        assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
        # Adam's update is lr * m / sqrt(v), at most ~lr in size: each stored moment is off by at most
        # U of the largest terms it summed (m may cancel to near 0), so the update by a few U * lr
        tolerance = 8 * U * optim.learning_rate
        for low, high in zip(jax.tree.leaves(updates_low), jax.tree.leaves(updates32)):
            np.testing.assert_allclose(low, high, rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_stochastic_rounding_is_unbiased_and_exact_on_the_grid(dtype):
    x = jnp.asarray([1.0 + 2**-12, -3.0 - 2**-11, 0.1, 1e-3, 12345.678], jnp.float32)
    seeds = jnp.arange(4000, dtype=jnp.uint32)
    draws = jax.vmap(lambda seed: stochastic_round(x, dtype, seed))(seeds).astype(jnp.float32)
    nearest = x.astype(dtype)
    other = jnp.nextafter(nearest, jnp.where(nearest.astype(jnp.float32) > x, -jnp.inf, jnp.inf).astype(dtype))
    nearest, other = nearest.astype(jnp.float32), other.astype(jnp.float32)
    # every draw is one of x's two grid neighbours, and their mean is x: within 5 standard errors
    # of a two-point draw (at most gap / 2 / sqrt(n))
    assert bool(jnp.all((draws == nearest) | (draws == other)))
    gap = jnp.abs(other - nearest)
    np.testing.assert_array_less(np.abs(draws.mean(0) - x), 5 * gap / 2 / np.sqrt(len(seeds)))
    # numbers on the grid, infinities and NaN stay; float32 is returned as is
    largest = float(jnp.finfo(dtype).max)
    exact = jnp.asarray([1.0, -0.5, 0.0, largest, -largest, jnp.inf, -jnp.inf], jnp.float32)
    np.testing.assert_array_equal(stochastic_round(exact, dtype, seeds[0]).astype(jnp.float32), exact)
    assert bool(jnp.isnan(stochastic_round(jnp.asarray([jnp.nan]), dtype, seeds[0]))[0])
    np.testing.assert_array_equal(stochastic_round(x, jnp.float32, seeds[0]), x)


def test_the_rounding_draws_are_uniform_and_independent_of_the_seed():
    """uniform_hash over a million elements: a flat histogram (chi-square per degree of freedom
    near 1: 1 +- 0.14 is one standard deviation with 99 of them), and no correlation between
    neighbouring elements or two seeds (an independent pair's is 0 +- 0.001)."""
    u = np.asarray(uniform_hash(jnp.uint32(7), (1000, 1000))).ravel()
    assert u.min() >= 0 and u.max() < 1
    counts = np.histogram(u, bins=100, range=(0, 1))[0]
    assert ((counts - 1e4) ** 2 / 1e4).sum() / 99 < 1.6
    v = np.asarray(uniform_hash(jnp.uint32(8), (1000, 1000))).ravel()
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.005 and abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.005


def test_small_updates_of_bf16_weights_accumulate_instead_of_vanishing():
    """100 updates of +1e-3 to weights of 1.0, whose bfloat16 neighbours are 2**-7 apart: rounded
    to nearest, every one is lost (1.0 + 1e-3 rounds to 1.0); apply_updates gets +0.1 on average."""
    params = {"w": jnp.ones(20000, jnp.bfloat16)}
    updates = {"w": jnp.full(20000, 1e-3, jnp.float32)}
    step = jax.jit(apply_updates)
    nearest = params
    for i in range(100):
        params = step(params, updates, jax.random.key(i))
        nearest = jax.tree.map(lambda p, u: (p.astype(jnp.float32) + u).astype(p.dtype), nearest, updates)
    assert params["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(nearest["w"], 1.0)
    # each weight's sum of 100 roundings has a standard deviation below 2**-7 * sqrt(100) / 2
    assert abs(float(params["w"].astype(jnp.float32).mean()) - 1.1) < 5 * 2**-7 * 5 / np.sqrt(20000)


def test_bf16_anchor_moves_toward_the_policy_on_average():
    """The policy one bfloat16 step above the anchor everywhere, mu = 0.9: the target is a tenth of
    a step away, which rounding to nearest would drop; the anchor moves up by a step in ~10% of
    its weights. mu = 0 copies the policy exactly."""
    _, layout = _layout("bfloat16", "bfloat16")
    anchor = layout.init(0).params
    policy = jax.tree.map(lambda a: jnp.nextafter(a, jnp.bfloat16(jnp.inf)), anchor)
    moved = make_anchor_update(layout, 0.9)(jax.tree.map(jnp.copy, anchor), policy)
    up = _flat(jax.tree.map(lambda m, p: m == p, moved, policy))
    stayed = _flat(jax.tree.map(lambda m, a: m == a, moved, anchor))
    assert np.all(up + stayed == 1)  # each weight is one of its two neighbours
    assert abs(up.mean() - 0.1) < 5 * np.sqrt(0.09 / up.size), up.mean()
    assert {x.dtype for x in jax.tree.leaves(moved)} == {jnp.dtype(jnp.bfloat16)}
    reset = make_anchor_update(layout, 0.0)(jax.tree.map(jnp.copy, anchor), policy)
    jax.tree.map(np.testing.assert_array_equal, reset, policy)


@pytest.mark.parametrize("moments_dtype", [pytest.param("float32", marks=pytest.mark.long), "bfloat16"])
def test_a_bf16_checkpoint_restores_as_bf16_exactly(tmp_path, moments_dtype):
    _, layout = _layout("bfloat16", "bfloat16", **{"optim.moments_dtype": moments_dtype})
    state = layout.init(0)
    # one real step, so that the moments are not zeros
    state, _ = make_sft_step(layout, lambda _: 1e-3, grad_accum_steps=1)(state, _sft_batch())
    expected = jax.tree.map(np.asarray, state)
    with Checkpointer(str(tmp_path)) as checkpointer:
        checkpointer.save(1, state)
        checkpointer.wait()
    with Checkpointer(str(tmp_path)) as checkpointer:
        restored, _ = checkpointer.restore(layout.abstract_state())
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.atleast_1d(np.asarray(got)).view(np.uint8), np.atleast_1d(want).view(np.uint8))
    assert {x.dtype for x in jax.tree.leaves(restored.params)} == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.long
def test_sft_rl_and_eval_run_in_bf16_end_to_end(tmp_path, t1jax_cli):
    """The tiny config with bfloat16 weights and computation: SFT, RL (every group trained, the
    anchor moved by EMA every step) and eval; finite metrics, bfloat16 checkpoints."""
    import json

    from t1jax.runtime.run_dir import load_run

    tiny = ROOT / "configs" / "tiny.py"
    bf16 = ["--config.model.param_dtype=bfloat16", "--config.model.compute_dtype=bfloat16"]
    sft, rl = tmp_path / "sft", tmp_path / "rl"
    t1jax_cli("sft", "--config", tiny, *bf16, f"--config.run.workdir={sft}", "--config.sft.num_steps=4",
              devices=2, check=True)  # fmt: skip
    t1jax_cli("rl", "--config", tiny, *bf16, f"--config.run.workdir={rl}", f"--config.rl.init_from={sft}",
              "--config.rl.num_steps=3", "--config.rl.filter_zero_variance=false", "--config.rl.penalties=false",
              "--config.rl.anchor_every=1", "--config.rl.anchor_mu=0.5", devices=2, check=True)  # fmt: skip
    done = t1jax_cli("eval", "--config", tiny, "--run", rl, "--config.eval.num_problems=4", devices=2, check=True)
    assert "Inference scaling" in done.stdout
    rows = [json.loads(line) for line in (rl / "metrics.jsonl").read_text().splitlines()]
    updates = [row for row in rows if "grad_norm" in row]
    assert len(updates) == 3
    for row in updates:
        assert all(np.isfinite(row[k]) for k in ("loss", "entropy", "kl_to_anchor", "grad_norm", "kl_sequence"))
    assert updates[-1]["update_norm"] > 0
    config = config_lib.load(str(tiny))
    for run in (sft, rl):
        params = load_run(run, config=config)[1]
        assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
