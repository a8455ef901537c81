"""Jitted, sharded pieces of the RL update: anchor scoring and the policy-gradient step.

An RL batch holds N = P x K sequences [prompt (left-padded) | response], with
  tokens      int32 [N, L]  the whole sequence
  valid       bool  [N, L]  real tokens (False on prompt padding and after the response)
  response    bool  [N, L]  response tokens (the ones the policy is trained on)
  old_logp    f32   [N, L]  log pi_old of each token from the sampler (0 elsewhere)
  ref_logp    f32   [N, L]  log pi_anchor of each token (0 elsewhere)
  advantage   f32   [N]
Position t of the per-token arrays refers to tokens[:, t]; token 0 is never a response token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.train.objectives import ema_update, policy_loss, sequence_kl, token_entropy
from t1jax.train.state import StateLayout, TrainState

BATCH_KEYS = ("tokens", "valid", "response", "old_logp", "ref_logp", "advantage")


def token_logprobs_and_logits(model_config, params, tokens_NL, valid_NL):
    """log p(tokens[:, t] | tokens[:, :t]) for t >= 1 (0 at t = 0), and the logits predicting them."""
    positions = jnp.maximum(jnp.cumsum(valid_NL, axis=1) - 1, 0).astype(jnp.int32)
    logits, _ = model_lib.forward(model_config, params, tokens_NL[:, :-1], positions[:, :-1], valid_NL[:, :-1])
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, tokens_NL[:, 1:, None], axis=-1)[..., 0]
    return jnp.pad(picked, ((0, 0), (1, 0))), logits


def make_score_fn(layout: StateLayout):
    """Returns score(params, tokens, valid) -> per-token logprobs [N, L] (for the anchor)."""
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)

    def score(params, tokens, valid):
        return token_logprobs_and_logits(layout.model_config, params, tokens, valid)[0]

    return jax.jit(score, in_shardings=(layout.shardings.params, batch_sh, batch_sh), out_shardings=batch_sh)


def make_rl_step(layout: StateLayout, rl_config, grad_accum_steps: int = 1):
    """Returns step(state, batch) -> (state, metrics): one optimizer update on `batch`.

    loss = policy_loss - entropy_coef * mean response-token entropy
           (+ kl_loss_coef * mean response-token k3 KL to the anchor, off by default: in T1 the
           KL enters through the shaped rewards). Micro-batches accumulate gradients exactly.
    """
    cfg, A = layout.model_config, grad_accum_steps
    r = rl_config
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    row_sh = jax.sharding.NamedSharding(
        layout.mesh, parallel.partition_spec(("batch",), layout.rules, mesh=layout.mesh)
    )
    shardings = {k: (row_sh if k == "advantage" else batch_sh) for k in BATCH_KEYS}

    def step(state: TrainState, batch):
        N = batch["tokens"].shape[0]
        mask_all = batch["response"].astype(jnp.float32)
        total_tokens = jnp.maximum(jnp.sum(mask_all), 1.0)
        micro = jax.tree.map(lambda x: x.reshape(N // A, A, *x.shape[1:]).swapaxes(0, 1), batch)

        def loss_fn(params, mb):
            logp, logits = token_logprobs_and_logits(cfg, params, mb["tokens"], mb["valid"])
            mask = mb["response"].astype(jnp.float32)
            entropy = jnp.pad(token_entropy(logits), ((0, 0), (1, 0)))
            # Micro-batch losses are weighted by their share of the batch's response tokens, so
            # the token-mean over the whole batch is exact under accumulation.
            weight = jnp.sum(mask) / total_tokens
            pg = policy_loss(logp, mb["old_logp"], mb["advantage"], mask, r.clip_low, r.clip_high, r.aggregation)
            pg = pg * (weight if r.aggregation == "token_mean" else mb["tokens"].shape[0] / N)
            entropy_sum = jnp.sum(entropy * mask)
            kl_sum = jnp.sum(sequence_kl(logp, mb["ref_logp"], mask, "k3"))
            loss = pg - r.entropy_coef * entropy_sum / total_tokens + r.kl_loss_coef * kl_sum / total_tokens
            ratio = jnp.exp(logp - mb["old_logp"])
            clipped = ((ratio < 1 - r.clip_low) | (ratio > 1 + r.clip_high)).astype(jnp.float32)
            return loss, {
                "pg_loss": pg,
                "entropy_sum": entropy_sum,
                "kl_sum": kl_sum,
                "clipped_sum": jnp.sum(clipped * mask),
            }

        def accumulate(grad_sum, mb):
            mb = {k: jax.lax.with_sharding_constraint(v, shardings[k]) for k, v in mb.items()}
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, mb)
            return jax.tree.map(jnp.add, grad_sum, grads), (loss, aux)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (losses, aux) = jax.lax.scan(accumulate, zeros, micro)
        updates, opt_state = layout.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": jnp.sum(losses),
            "pg_loss": jnp.sum(aux["pg_loss"]),
            "entropy": jnp.sum(aux["entropy_sum"]) / total_tokens,
            "kl_to_anchor": jnp.sum(aux["kl_sum"]) / total_tokens,
            "clip_fraction": jnp.sum(aux["clipped_sum"]) / total_tokens,
            "grad_norm": optax.tree.norm(grads),
        }
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return jax.jit(
        step,
        in_shardings=(layout.shardings, shardings),
        out_shardings=(layout.shardings, parallel.replicated(layout.mesh)),
        donate_argnums=0,
    )


def make_anchor_update(layout: StateLayout, mu: float):
    """Returns update(anchor, params) -> anchor moved toward params, on device (mu = 0: reset)."""
    sh = layout.shardings.params
    return jax.jit(
        lambda anchor, params: ema_update(anchor, params, mu), in_shardings=(sh, sh), out_shardings=sh, donate_argnums=0
    )
