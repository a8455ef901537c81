"""The jitted, sharded SFT step: next-token cross-entropy on response tokens only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.errors import ConfigError
from t1jax.train.micro_batches import micro_batch_count
from t1jax.train.optimizer import apply_updates, rounding_key, summed_gradients
from t1jax.train.state import StateLayout, TrainState, jit_with_base, model_params
from t1jax.train.token_stats import chunk_length, logits_stats, token_stats


def sft_micro_batches(sft_config, mesh, rules) -> int:
    """Micro-batches per SFT step (micro_batches.py): sft.grad_accum_steps, checked to split the
    rows evenly over the mesh's batch shards, or where that is 0 the automatic count."""
    rows, shards = sft_config.batch_size, parallel.batch_shards(mesh, rules)
    requested = sft_config.grad_accum_steps
    if requested:
        if rows % (requested * shards):
            raise ConfigError(
                f"the micro-batch (sft.batch_size {rows} / sft.grad_accum_steps {requested} = {rows // requested}) "
                f"must be divisible by the {shards} batch shards of the mesh {dict(mesh.shape)}"
            )
        return requested
    if rows % shards:
        raise ConfigError(
            f"sft.batch_size ({rows}) must be divisible by the {shards} batch shards of the mesh {dict(mesh.shape)}"
        )
    return micro_batch_count(0, mesh, rows // shards, sft_config.seq_len)


def masked_token_nll(logits_BTV, targets_BT, mask_BT):
    """Sum of -log p(target) over positions where mask is 1, and the number of such positions
    (from full logits; sequence_loss gets the same from the hidden states, chunk by chunk)."""
    logp, _ = logits_stats(logits_BTV, targets_BT, with_entropy=False)
    mask = mask_BT.astype(jnp.float32)
    return -jnp.sum(logp * mask), jnp.sum(mask)


def sequence_loss(model_config, params, batch, chunk_len: int = 0):
    """Predicts tokens[:, 1:] from tokens[:, :-1]; loss_mask marks the tokens to predict. Returns
    (sum of -log p over the marked tokens, their count).

    A packed batch (sft_batches.batch_stream(pack=True)) also has segment_ids and positions:
    each example then attends to itself only, and no token is predicted across a boundary.
    chunk_len: positions whose logits are computed at once (token_stats; 0: all).
    """
    tokens, mask = batch["tokens"], batch["loss_mask"][:, 1:].astype(jnp.float32)
    if "segment_ids" not in batch:
        hidden, unembedding = model_lib.hidden_and_unembedding(model_config, params, tokens[:, :-1])
    else:
        segments, positions = batch["segment_ids"], batch["positions"]
        inputs = segments[:, :-1]  # padding (segment 0) is a key to no real token
        hidden, unembedding = model_lib.hidden_and_unembedding(
            model_config, params, tokens[:, :-1], positions[:, :-1], segment_ids_BT=inputs
        )
        # An example's first token (bos) is never in the loss mask; this keeps it so for any data.
        mask = mask * (segments[:, 1:] == inputs)
    logp, _ = token_stats(hidden, unembedding, tokens[:, 1:], chunk_len, with_entropy=False)
    return -jnp.sum(logp * mask), jnp.sum(mask)


def make_sft_step(layout: StateLayout, schedule: optax.Schedule, grad_accum_steps: int, logits_chunk_tokens: int = 0):
    """Returns step(state, batch) -> (state, metrics), jitted with explicit shardings; with LoRA
    step(state, base, batch), the frozen base weights an argument of their own (state.py).

    batch = {"tokens": int32 [B, T+1], "loss_mask": [B, T+1]}, and "segment_ids" and "positions"
    when rows are packed (then every array has the same [B, T+1] shape). The batch is split into
    `grad_accum_steps` micro-batches whose gradients are summed; the loss is normalised by the
    response-token count of the whole batch, so accumulation gives exactly the full-batch
    gradient. The incoming state's buffers are donated. logits_chunk_tokens: tokens per device
    whose logits are computed at once (optim.logits_chunk_tokens; 0: all).
    """
    cfg, A = layout.model_config, grad_accum_steps
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    shards = parallel.batch_shards(layout.mesh, layout.rules)

    def step(state: TrainState, base, batch):
        B = batch["tokens"].shape[0]
        chunk_len = chunk_length(logits_chunk_tokens, B // A // shards)
        total_tokens = jnp.maximum(jnp.sum(batch["loss_mask"][:, 1:].astype(jnp.float32)), 1.0)
        # Micro-batch i takes rows i, i+A, i+2A, ...: each keeps an even share of every shard.
        micro = jax.tree.map(lambda x: x.reshape(B // A, A, -1).swapaxes(0, 1), batch)

        def loss_fn(trained, micro_batch):
            nll_sum, _ = sequence_loss(cfg, model_params(layout, trained, base), micro_batch, chunk_len)
            return nll_sum / total_tokens

        def value_and_grad(params, micro_batch):
            micro_batch = jax.lax.with_sharding_constraint(micro_batch, batch_sh)
            return jax.value_and_grad(loss_fn)(params, micro_batch)

        grads, losses = summed_gradients(value_and_grad, state.params, micro)
        updates, opt_state = layout.tx.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates, rounding_key(state.rng, state.step))
        metrics = {
            "loss": jnp.sum(losses),
            "grad_norm": optax.tree.norm(grads),
            "update_norm": optax.tree.norm(updates),
            "learning_rate": schedule(state.step),
            "response_tokens": total_tokens,
            "examples": _count_examples(batch),
        }
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    out_shardings = (layout.shardings, parallel.replicated(layout.mesh))
    # batch_sh: one sharding for every array of the batch
    return jit_with_base(layout, step, layout.shardings, (batch_sh,), out_shardings, donate_first=True)


def _count_examples(batch):
    """Examples in a batch: its rows, or (packed) the segments of its rows, numbered 1, 2, ..."""
    if "segment_ids" not in batch:
        return jnp.asarray(batch["tokens"].shape[0], jnp.float32)
    return jnp.sum(jnp.max(batch["segment_ids"], axis=1).astype(jnp.float32))


def make_eval_loss(layout: StateLayout, logits_chunk_tokens: int = 0):
    """Returns loss(params, batch) -> (nll_sum, token_count), jitted on the mesh (logits_chunk_tokens
    as in make_sft_step); with LoRA loss(adapters, base, batch)."""
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    shards = parallel.batch_shards(layout.mesh, layout.rules)

    def loss(trained, base, batch):
        chunk_len = chunk_length(logits_chunk_tokens, batch["tokens"].shape[0] // shards)
        return sequence_loss(layout.model_config, model_params(layout, trained, base), batch, chunk_len)

    replicated = parallel.replicated(layout.mesh)
    return jit_with_base(layout, loss, layout.trained_shardings, (batch_sh,), replicated, donate_first=False)
