"""The decoder-only transformer that both the sampler and the train steps run.

Its layers are either a list of blocks, applied one after the other, or (model.scan_layers) one
block whose parameters are stacked on a leading layer axis, applied by a jax.lax.scan: the layer
is traced and compiled once whatever the depth. Either way each layer may be rematerialised in the
backward pass (model.remat)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from t1jax.config import ModelConfig
from t1jax.model.attention import Attention
from t1jax.model.kv_cache import KVCache
from t1jax.model.layers import RMSNorm, param, rope_inv_freq
from t1jax.model.remat import rematerialised


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
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        dt, plus_one = config.params_dtype, config.norm_plus_one
        norm = functools.partial(RMSNorm, config.d_model, config.norm_eps, dt, rngs, plus_one=plus_one)
        self.attention_norm = norm()
        self.attention = Attention(config, rngs)
        self.mlp_norm = norm()
        self.mlp = MLP(config, rngs)
        self.post_norms = config.post_norms
        if config.post_norms:
            self.post_attention_norm = norm()
            self.post_mlp_norm = norm()

    def __call__(
        self, x_BTD, positions_BT, key_pos_BS, inv_freq_F, window, kv=None, index=None, prefix=None, segment_ids_BT=None
    ):
        """One layer; inv_freq_F and window are the layer's own (see Attention.__call__)."""
        attended, kv = self.attention(
            self.attention_norm(x_BTD), positions_BT, key_pos_BS, inv_freq_F, window, kv, index, prefix, segment_ids_BT
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
        blocks = [Block(config, rngs) for _ in range(config.num_layers)]
        # stacked from the same draws as the list: both forms of a seed hold the same weights
        self.blocks = stack_blocks(blocks) if config.scans_layers else nnx.List(blocks)
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
        if cache is None and prefix is None:
            x = self._layers_without_cache(x, positions_BT, key_pos_BS, segment_ids_BT)
            return self.final_norm(x), None
        new_k, new_v = [], []
        for i, (block, inv_freq_F, window) in enumerate(self._layers()):
            kv = None if cache is None else (cache.k[i], cache.v[i])
            shared = None if prefix is None else (prefix.k[i], prefix.v[i], prefix.key_pos_BS)
            index = None if cache is None else cache.index
            x, (k, v) = block(x, positions_BT, key_pos_BS, inv_freq_F, window, kv, index, shared)
            new_k.append(k)
            new_v.append(v)
        x = self.final_norm(x)
        if cache is None:
            return x, None
        return x, KVCache(k=tuple(new_k), v=tuple(new_v), key_pos_BS=key_pos_BS, index=cache.index + T)

    def _layers(self):
        """(block, RoPE inverse frequencies, window) of every layer in turn; a scanned model's
        blocks are views of its stacked parameters (a pass with a cache, which is never
        differentiated, walks the layers one by one, since its caches are per layer)."""
        inv_freqs, windows = layer_constants(self.config)
        if not self.config.scans_layers:
            return zip(self.blocks, inv_freqs, windows)
        graphdef, stacked = nnx.split(self.blocks)
        views = (nnx.merge(graphdef, jax.tree.map(lambda w, i=i: w[i], stacked)) for i in range(len(windows)))
        return zip(views, inv_freqs, windows)

    def _layers_without_cache(self, x_BTD, positions_BT, key_pos_BS, segment_ids_BT):
        """The layers of a pass without a cache (training, scoring): rematerialised as
        model.remat says, and scanned with model.scan_layers."""
        cfg = self.config

        def layer(block_state, x_BTD, inv_freq_F, window, graphdef):
            block = nnx.merge(graphdef, block_state)
            return block(x_BTD, positions_BT, key_pos_BS, inv_freq_F, window, segment_ids_BT=segment_ids_BT)[0]

        inv_freqs, windows = layer_constants(cfg)
        if not cfg.scans_layers:
            for block, inv_freq_F, window in zip(self.blocks, inv_freqs, windows):
                graphdef, block_state = nnx.split(block)
                run = rematerialised(functools.partial(layer, graphdef=graphdef, window=window), cfg.remat, False)
                x_BTD = run(block_state, x_BTD, inv_freq_F)
            return x_BTD
        graphdef, stacked = nnx.split(self.blocks)
        # per-layer constants that are the same in every layer stay constants; the others are
        # scanned over with the parameters
        same_freqs, same_windows = len(set(map(bytes, inv_freqs))) == 1, len(set(windows)) == 1
        window_arg = windows[0] if same_windows else jnp.asarray(windows, jnp.int32)
        freq_arg = jnp.asarray(inv_freqs[0]) if same_freqs else jnp.asarray(np.stack(inv_freqs))

        def step(x_BTD, xs):
            block_state, inv_freq_F, window = xs
            run = rematerialised(functools.partial(layer, graphdef=graphdef), cfg.remat, True)
            return run(
                block_state, x_BTD, freq_arg if same_freqs else inv_freq_F, window_arg if same_windows else window
            ), None

        xs = (stacked, None if same_freqs else freq_arg, None if same_windows else window_arg)
        return jax.lax.scan(step, x_BTD, xs)[0]

    def unembedding(self):
        """The [d_model, vocab] matrix that turns final hidden states into logits (the transposed
        embedding when tied)."""
        return self.embed[...].T if self.config.tie_embeddings else self.unembed[...]


def stack_blocks(blocks: list[Block]) -> Block:
    """One block whose parameters are those of `blocks`, stacked on a new leading (layer) axis."""
    graphdef, _ = nnx.split(blocks[0])
    stacked = jax.tree.map(lambda *layers: jnp.stack(layers), *(nnx.state(b) for b in blocks))
    return nnx.merge(graphdef, stacked)


def layer_constants(config: ModelConfig) -> tuple[list[np.ndarray], list[int]]:
    """Every layer's RoPE inverse frequencies and sliding window (0: global)."""
    llama3 = config.rope_low_freq_factor, config.rope_high_freq_factor, config.rope_original_max_len
    inv_freqs, windows = [], []
    for layer in range(config.num_layers):
        base, scaling = config.rope_of_layer(layer)
        # numpy: constants, whatever device or trace is current
        inv_freqs.append(rope_inv_freq(config.dim_per_head, base, scaling, config.rope_scaling_factor, llama3, np))
        windows.append(config.window_of_layer(layer))
    return inv_freqs, windows
