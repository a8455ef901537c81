"""Jitted, sharded pieces of the RL update: anchor scoring and the policy-gradient step.

An RL batch holds R rows of L tokens; each row holds one sequence [prompt | response], or
several side by side when packed (batch.build_batch). Every array is per token, [R, L]:
  tokens       int32  the sequences, then padding
  positions    int32  each token's position in its own sequence (from 0)
  segment_ids  int32  which sequence of the row a token belongs to (1, 2, ...; 0 = padding)
  response     bool   response tokens (the ones the policy is trained on)
  old_logp     f32    log pi_old of each response token from the sampler (0 elsewhere)
  ref_logp     f32    log pi_anchor of each response token (0 elsewhere)
  advantage    f32    the advantage of the token's sequence
  loss_weight  f32    the token's weight in the policy loss (batch.loss_weights)
Position t of the per-token arrays refers to tokens[:, t]; a sequence's first token is never a
response token, so predicting token t from the tokens before it never crosses a boundary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.train.micro_batches import micro_batch_count
from t1jax.train.objectives import clipped_surrogate, ema_update, token_kl
from t1jax.train.optimizer import apply_updates, round_like, rounding_key, summed_gradients
from t1jax.train.rl.batch import loss_weights
from t1jax.train.state import StateLayout, TrainState, jit_with_base, model_params
from t1jax.train.token_stats import chunk_length, token_stats

BATCH_KEYS = ("tokens", "positions", "segment_ids", "response", "old_logp", "ref_logp", "advantage", "loss_weight")


def token_logprobs_and_entropy(
    model_config, params, tokens_RL, positions_RL, segment_ids_RL, chunk_len=0, entropy=True
):
    """log p(tokens[:, t] | the tokens of its sequence before t) for t >= 1 (0 at t = 0), and the
    entropy of the distribution that predicts it (None without `entropy`). Across a boundary
    between packed sequences the values are meaningless (the response mask never selects them).
    chunk_len: positions whose logits are computed at once (token_stats; 0: all)."""
    # position t predicts token t + 1; padding (segment 0) is a key to no real token
    hidden, unembedding = model_lib.hidden_and_unembedding(
        model_config, params, tokens_RL[:, :-1], positions_RL[:, :-1], segment_ids_BT=segment_ids_RL[:, :-1]
    )
    stats = token_stats(hidden, unembedding, tokens_RL[:, 1:], chunk_len, with_entropy=entropy)
    return jax.tree.map(lambda x: jnp.pad(x, ((0, 0), (1, 0))), stats)


def make_score_fn(layout: StateLayout, logits_chunk_tokens: int = 0):
    """Returns score(params, tokens, positions, segment_ids) -> per-token logprobs [R, L] (for the
    anchor); logits_chunk_tokens: tokens per device whose logits are computed at once (0: all).
    With LoRA score(adapters, base, tokens, positions, segment_ids): the anchor's own adapters on
    the policy's frozen base."""
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    shards = parallel.batch_shards(layout.mesh, layout.rules)

    def score(trained, base, tokens, positions, segment_ids):
        chunk_len = chunk_length(logits_chunk_tokens, tokens.shape[0] // shards)
        cfg, params = layout.model_config, model_params(layout, trained, base)
        return token_logprobs_and_entropy(cfg, params, tokens, positions, segment_ids, chunk_len, entropy=False)[0]

    return jit_with_base(layout, score, layout.trained_shardings, (batch_sh,) * 3, batch_sh, donate_first=False)


def make_update_step(layout: StateLayout, rl_config, grad_accum_steps: int = 1, logits_chunk_tokens: int = 0):
    """Returns step(state, batch) -> (state, metrics): one optimizer update on `batch`; with LoRA
    step(state, base, batch), the frozen base weights an argument of their own (state.py).

    loss = sum over response tokens of loss_weight * clipped surrogate (the token_mean or
           seq_mean policy loss, by the weights) - entropy_coef * mean response-token entropy
           (+ kl_loss_coef * mean response-token k3 KL to the anchor, off by default: in T1 the
           KL enters through the shaped rewards). Micro-batches accumulate gradients exactly;
    grad_accum_steps 0 picks their count from each batch's shape when the step is traced.
    logits_chunk_tokens: tokens per device whose logits are computed at once (0: all).
    """
    cfg, r = layout.model_config, rl_config
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    shards = parallel.batch_shards(layout.mesh, layout.rules)

    def step(state: TrainState, base, batch):
        R, T = batch["tokens"].shape
        A = micro_batch_count(grad_accum_steps, layout.mesh, R // shards, T)
        chunk_len = chunk_length(logits_chunk_tokens, R // A // shards)
        total_tokens = jnp.maximum(jnp.sum(batch["response"].astype(jnp.float32)), 1.0)
        micro = jax.tree.map(lambda x: x.reshape(R // A, A, *x.shape[1:]).swapaxes(0, 1), batch)

        def loss_fn(trained, mb):
            params = model_params(layout, trained, base)
            logp, entropy = token_logprobs_and_entropy(
                cfg, params, mb["tokens"], mb["positions"], mb["segment_ids"], chunk_len
            )
            mask = mb["response"].astype(jnp.float32)
            per_token = clipped_surrogate(logp, mb["old_logp"], mb["advantage"], r.clip_low, r.clip_high)
            pg = jnp.sum(per_token * mb["loss_weight"] * mask)
            entropy_sum = jnp.sum(entropy * mask)
            kl_sum = jnp.sum(token_kl(logp, mb["ref_logp"], "k3") * mask)
            loss = pg - r.entropy_coef * entropy_sum / total_tokens + r.kl_loss_coef * kl_sum / total_tokens
            ratio = jnp.exp(logp - mb["old_logp"])
            clipped = ((ratio < 1 - r.clip_low) | (ratio > 1 + r.clip_high)).astype(jnp.float32)
            return loss, {
                "pg_loss": pg,
                "entropy_sum": entropy_sum,
                "kl_sum": kl_sum,
                "clipped_sum": jnp.sum(clipped * mask),
            }

        def value_and_grad(params, mb):
            mb = {k: jax.lax.with_sharding_constraint(v, batch_sh) for k, v in mb.items()}
            return jax.value_and_grad(loss_fn, has_aux=True)(params, mb)

        grads, (losses, aux) = summed_gradients(value_and_grad, state.params, micro)
        updates, opt_state = layout.tx.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates, rounding_key(state.rng, state.step))
        metrics = {
            "loss": jnp.sum(losses),
            "pg_loss": jnp.sum(aux["pg_loss"]),
            "entropy": jnp.sum(aux["entropy_sum"]) / total_tokens,
            "kl_to_anchor": jnp.sum(aux["kl_sum"]) / total_tokens,
            "clip_fraction": jnp.sum(aux["clipped_sum"]) / total_tokens,
            "grad_norm": optax.tree.norm(grads),
            "update_norm": optax.tree.norm(updates),
        }
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    out_shardings = (layout.shardings, parallel.replicated(layout.mesh))
    batch_shardings = {k: batch_sh for k in BATCH_KEYS}
    return jit_with_base(layout, step, layout.shardings, (batch_shardings,), out_shardings, donate_first=True)


def make_anchor_update(layout: StateLayout, mu: float):
    """Returns update(anchor, params) -> anchor moved toward params, on device (mu = 0: reset).
    With LoRA both are adapters: the anchor is the frozen base with adapters of its own.

    The average is taken in float32 and rounded to the parameters' dtype as the optimizer's
    step is (stochastically for bfloat16): rounded to nearest, a bfloat16 anchor would not move
    at all while it differs from the policy by less than ~0.4% / (1 - mu) of each weight."""
    sh = layout.trained_shardings

    def update(anchor, params):
        f32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)  # noqa: E731
        return round_like(ema_update(f32(anchor), f32(params), mu), anchor, _key_of(params))

    return jax.jit(update, in_shardings=(sh, sh), out_shardings=sh, donate_argnums=0)


def make_merge(layout: StateLayout):
    """Returns merge(adapters, base) -> the params a LoRA policy runs with (state.model_params),
    placed like the params: what the sampler gets."""
    sh = layout.param_shardings

    def merge(adapters, base):
        return model_params(layout, adapters, base)

    return jax.jit(merge, in_shardings=(layout.trained_shardings, sh), out_shardings=sh)


def _key_of(params):
    """A rounding key that is a function of the policy's bits: another at every move of the anchor
    (the policy has changed since), and the same after a resume."""
    words = [jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")) for x in jax.tree.leaves(params)]
    total = sum(jnp.sum(w.astype(jnp.uint32), dtype=jnp.uint32) for w in words)
    return jax.random.fold_in(jax.random.PRNGKey(0), total)


def update_policy(update_step, state: TrainState, batch: dict, rl_config):
    """rl.num_passes passes of rl.minibatches optimizer steps each over `batch` (the per-token
    arrays with ref_logp and advantage). Returns (state, the last step's metrics)."""
    r, metrics = rl_config, {}
    for _ in range(r.num_passes):
        for part in _minibatches(batch, r.minibatches):
            part["loss_weight"] = loss_weights(part, r.aggregation)
            state, metrics = update_step(state, {k: part[k] for k in BATCH_KEYS})
    return state, metrics


def _minibatches(batch: dict, count: int):
    """`count` equal slices of the rows (batch.pack makes the row count a multiple of it)."""
    size = len(batch["tokens"]) // count
    for i in range(count):
        yield {k: v[i * size : (i + 1) * size] for k, v in batch.items()}
