"""The decoder-only transformer that both the sampler and the train steps run."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from t1jax.config import ModelConfig
from t1jax.model.attention import Attention
from t1jax.model.kv_cache import KVCache
from t1jax.model.layers import RMSNorm, param


def logits_from_hidden(x_BTD, unembedding_DV):
    """Float32 logits [B, T, vocab] from final normed hidden states: the model's output layer, also
    applied piece by piece (t1jax.train.token_stats) so that no [B, T, vocab] tensor is needed."""
    return jnp.einsum("btd,dv->btv", x_BTD, unembedding_DV.astype(x_BTD.dtype), preferred_element_type=jnp.float32)


class MLP(nnx.Module):
    """Gated MLP: down(act(gate(x)) * up(x)); SwiGLU with silu, GeGLU with gelu."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        d, f, dt = config.d_model, config.mlp_dim, config.params_dtype
        self.gate = param(rngs, (d, f), ("embed", "mlp"), dt)
        self.up = param(rngs, (d, f), ("embed", "mlp"), dt)
        self.down = param(rngs, (f, d), ("mlp", "embed"), dt)
        self.activation = jax.nn.silu if config.mlp_activation == "silu" else jax.nn.gelu

    def __call__(self, x_BTD):
        # As plain 2-D matmuls: XLA's CPU backend runs [B, T, D] @ [D, F] ~25% slower per step.
        B, T, D = x_BTD.shape
        dt, x = x_BTD.dtype, x_BTD.reshape(B * T, D)
        hidden = self.activation(x @ self.gate[...].astype(dt)) * (x @ self.up[...].astype(dt))
        return (hidden @ self.down[...].astype(dt)).reshape(B, T, D)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, layer: int, rngs: nnx.Rngs):
        dt, plus_one = config.params_dtype, config.norm_plus_one
        norm = functools.partial(RMSNorm, config.d_model, config.norm_eps, dt, rngs, plus_one=plus_one)
        self.attention_norm = norm()
        self.attention = Attention(config, layer, rngs)
        self.mlp_norm = norm()
        self.mlp = MLP(config, rngs)
        self.post_norms = config.post_norms
        if config.post_norms:
            self.post_attention_norm = norm()
            self.post_mlp_norm = norm()

    def __call__(self, x_BTD, positions_BT, key_pos_BS, kv=None, index=None, prefix=None, segment_ids_BT=None):
        attended, kv = self.attention(
            self.attention_norm(x_BTD), positions_BT, key_pos_BS, kv, index, prefix, segment_ids_BT
        )
        if self.post_norms:
            attended = self.post_attention_norm(attended)
        x_BTD = x_BTD + attended
        mlp_out = self.mlp(self.mlp_norm(x_BTD))
        if self.post_norms:
            mlp_out = self.post_mlp_norm(mlp_out)
        return x_BTD + mlp_out, kv


class Transformer(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        v, d, dt = config.vocab_size, config.d_model, config.params_dtype
        self.embed = param(rngs, (v, d), ("vocab", "embed"), dt, init=d)
        self.blocks = nnx.List([Block(config, i, rngs) for i in range(config.num_layers)])
        self.final_norm = RMSNorm(d, config.norm_eps, dt, rngs, plus_one=config.norm_plus_one)
        if not config.tie_embeddings:
            self.unembed = param(rngs, (d, v), ("embed", "vocab"), dt)

    def __call__(
        self,
        tokens_BT,
        positions_BT=None,
        mask_BT=None,
        cache: KVCache | None = None,
        prefix: KVCache | None = None,
        segment_ids_BT=None,
    ):
        """Returns float32 logits [B, T, vocab] and the updated cache (None without one); the
        arguments are those of `hidden_states`."""
        x_BTD, cache = self.hidden_states(tokens_BT, positions_BT, mask_BT, cache, prefix, segment_ids_BT)
        return logits_from_hidden(x_BTD, self.unembedding()), cache

    def hidden_states(
        self,
        tokens_BT,
        positions_BT=None,
        mask_BT=None,
        cache: KVCache | None = None,
        prefix: KVCache | None = None,
        segment_ids_BT=None,
    ):
        """Returns the final normed hidden states [B, T, d_model] (in the compute dtype) and the
        updated cache (None without one).

        positions_BT: defaults to 0..T-1 (or, with a cache, continuing from `cache.index`).
        mask_BT: False for padding tokens, which then serve as keys to no one.
        prefix: a read-only cache of P rows whose keys each B // P consecutive rows also attend
            to (a prompt's cache shared by its samples); pass explicit positions with it.
        segment_ids_BT: for rows that pack several sequences (training, no cache): tokens attend
            only within their own segment, so padding given its own id (0) needs no mask_BT;
            pass each sequence's own positions (from 0) with it.
        """
        cfg = self.config
        if segment_ids_BT is not None and (cache is not None or prefix is not None):
            raise ValueError("segment_ids_BT (packed rows) is for a forward pass without a cache or prefix")
        B, T = tokens_BT.shape
        if positions_BT is None:
            start = 0 if cache is None else cache.index
            positions_BT = jnp.broadcast_to(start + jnp.arange(T, dtype=jnp.int32), (B, T))
        new_key_pos = positions_BT if mask_BT is None else jnp.where(mask_BT, positions_BT, -1)
        if cache is None:
            key_pos_BS = new_key_pos
        else:
            key_pos_BS = jax.lax.dynamic_update_slice(cache.key_pos_BS, new_key_pos.astype(jnp.int32), (0, cache.index))

        x = jnp.take(self.embed[...], tokens_BT, axis=0)
        if cfg.scale_embeddings:  # in the parameter dtype, as Gemma does: sqrt(d_model) rounds to bf16 with it
            x = x * jnp.asarray(cfg.d_model**0.5, x.dtype)
        x = x.astype(cfg.activations_dtype)
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            kv = None if cache is None else (cache.k[i], cache.v[i])
            shared = None if prefix is None else (prefix.k[i], prefix.v[i], prefix.key_pos_BS)
            index = None if cache is None else cache.index
            x, (k, v) = block(x, positions_BT, key_pos_BS, kv, index, shared, segment_ids_BT)
            new_k.append(k)
            new_v.append(v)
        x = self.final_norm(x)
        if cache is None:
            return x, None
        return x, KVCache(k=tuple(new_k), v=tuple(new_v), key_pos_BS=key_pos_BS, index=cache.index + T)

    def unembedding(self):
        """The [d_model, vocab] matrix that turns final hidden states into logits (the transposed
        embedding when tied)."""
        return self.embed[...].T if self.config.tie_embeddings else self.unembed[...]
