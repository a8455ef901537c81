"""Grouped-query attention with RoPE, optional QK-norm, QKV bias and a sliding window.

What differs between layers (the sliding window, RoPE's frequencies) is an argument of the call,
not an attribute: one layer's module then applies any layer's parameters, as a scan over the
layers needs (Transformer with model.scan_layers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from t1jax.config import ModelConfig
from t1jax.model.attention_kernels import attend
from t1jax.model.layers import RMSNorm, param, rotary

_MASKED = -1e30  # finite, so a row with every key masked gives a uniform row, not NaN


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        d, h, n, kv, dt = (
            config.d_model,
            config.dim_per_head,
            config.num_heads,
            config.num_kv_heads,
            config.params_dtype,
        )
        self.config = config
        self.q = param(rngs, (d, n, h), ("embed", "heads", "head_dim"), dt)
        self.k = param(rngs, (d, kv, h), ("embed", "kv_heads", "head_dim"), dt)
        self.v = param(rngs, (d, kv, h), ("embed", "kv_heads", "head_dim"), dt)
        self.o = param(rngs, (n, h, d), ("heads", "head_dim", "embed"), dt, init=n * h)
        if config.qkv_bias:
            self.q_bias = param(rngs, (n, h), ("heads", "head_dim"), dt, init="zeros")
            self.k_bias = param(rngs, (kv, h), ("kv_heads", "head_dim"), dt, init="zeros")
            self.v_bias = param(rngs, (kv, h), ("kv_heads", "head_dim"), dt, init="zeros")
        if config.qk_norm:
            self.q_norm = RMSNorm(h, config.norm_eps, dt, rngs, plus_one=config.norm_plus_one)
            self.k_norm = RMSNorm(h, config.norm_eps, dt, rngs, plus_one=config.norm_plus_one)

    def _project(self, x_BTD, name: str):
        # Plain 2-D matmuls, as in the MLP: XLA's CPU backend otherwise may transpose a weight
        # at every decode step to match the layout it picked for the activations.
        w = getattr(self, name)[...].astype(x_BTD.dtype)
        (B, T, D), (_, N, H) = x_BTD.shape, w.shape
        out = (x_BTD.reshape(B * T, D) @ w.reshape(D, N * H)).reshape(B, T, N, H)
        if self.config.qkv_bias:
            out = out + getattr(self, name + "_bias")[...].astype(out.dtype)
        return checkpoint_name(out, f"{name}_proj")  # what model.remat policies may keep

    def __call__(
        self, x_BTD, positions_BT, key_pos_BS, inv_freq_F, window, kv=None, index=None, prefix=None, segment_ids_BT=None
    ):
        """Attends from the T new tokens to the keys in `kv` (after writing the new keys at
        slot `index`) or, without a cache, to the new tokens themselves; and, with a `prefix`
        (keys [P, KV, H, S'], values [P, KV, S', H], their positions [P, S']), also to keys
        that every B // P consecutive rows share: the prompt of K samples, stored once.

        key_pos_BS: position of every key slot (-1 = masked); returns (out_BTD, (k, v)).
        inv_freq_F: this layer's RoPE inverse frequencies (layers.rope_inv_freq).
        window: this layer's sliding window (0: global), an int or a traced int32 scalar.
        segment_ids_BT: (no cache) the sequence each token belongs to in a row that packs several;
            a token attends only to its own sequence.
        """
        cfg = self.config
        q, k, v = (self._project(x_BTD, name) for name in ("q", "k", "v"))
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rotary(q, positions_BT, inv_freq_F), rotary(k, positions_BT, inv_freq_F)
        B, T, N, H = q.shape
        scale = cfg.query_scale or H**-0.5
        if kv is None and prefix is None:  # training and scoring: no cache
            keys, values = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
            if cfg.attention == "xla":
                out = _causal_attention(q * scale, keys, values, positions_BT, key_pos_BS, segment_ids_BT, window)
            else:
                out = self._kernel(q, k, v, positions_BT, key_pos_BS, segment_ids_BT, window, scale)
            return self._output(out), (keys, values)
        v_BKTH = v.transpose(0, 2, 1, 3)
        if kv is None:
            keys, values, key_spec = k.transpose(0, 2, 1, 3), v_BKTH, "bksh"
        else:
            # Cached keys are [B, KV, H, S]: a decode step's scores are then a sum over H of
            # contiguous rows of S, which XLA's CPU backend vectorizes ~2x better than
            # H-length dot products (a decode step at batch 64, 544 slots: 45 -> 30 ms).
            k_BKHT = k.transpose(0, 2, 3, 1).astype(kv[0].dtype)
            keys = jax.lax.dynamic_update_slice(kv[0], k_BKHT, (0, 0, 0, index))
            values = jax.lax.dynamic_update_slice(kv[1], v_BKTH.astype(kv[1].dtype), (0, 0, index, 0))
            key_spec = "bkhs"

        K, S, G = values.shape[1], values.shape[2], N // values.shape[1]
        q = q * scale
        # The G query heads of a kv head and their T positions form one [G*T, H] x [H, S] matmul
        # per (batch, kv head): no repeated keys.
        q_BKQH = q.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, H)
        scores = jnp.einsum(f"bkqh,{key_spec}->bkqs", q_BKQH, keys.astype(q.dtype), preferred_element_type=jnp.float32)
        scores = scores.reshape(B, K, G, T, S)
        scores = jnp.where(_mask(positions_BT, key_pos_BS, window)[:, None, None], scores, _MASKED)
        if prefix is None:
            probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype).reshape(B, K, G * T, S)
            out = jnp.einsum("bkqs,bksh->bkqh", probs, values.astype(q.dtype))
        else:
            out = self._with_prefix(q_BKQH, scores, values, positions_BT, window, prefix)
        return self._output(out.reshape(B, K, G, T, H).transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)), (keys, values)

    def _output(self, out_BTNH):
        """The output projection of the heads' attended values."""
        B, T, N, H = out_BTNH.shape
        o = self.o[...].astype(out_BTNH.dtype).reshape(N * H, -1)
        return checkpoint_name((out_BTNH.reshape(B * T, N * H) @ o).reshape(B, T, -1), "out_proj")

    def _kernel(self, q, k, v, positions_BT, key_pos_BT, segment_ids_BT, window, scale):
        """Attention without a cache through model.attention's kernel (attention_kernels): [B, T, N, H]."""
        cfg = self.config
        windows = tuple(sorted({cfg.window_of_layer(i) for i in range(cfg.num_layers)}))
        return attend(
            q, k, v, positions_BT, key_pos_BT, segment_ids_BT, window, scale, cfg.attention, window_choices=windows
        )

    def _with_prefix(self, q_BKQH, scores_BKGTS, values_BKSH, positions_BT, window, prefix):
        """One softmax over the shared prefix's keys and the rows' own keys (masked scores
        `scores_BKGTS`); returns the attended values [B, KV, G*T, H].

        The R = B // P rows of a prefix read its keys as one [R*G*T, H] x [H, S'] matmul, so
        the prompt's cache is read once for its K samples, not K times.
        """
        keys_PKHS, values_PKSH, key_pos_PS = prefix
        B, K, G, T, S = scores_BKGTS.shape
        P = keys_PKHS.shape[0]
        R = B // P

        def per_prefix(x):  # [B, K, Q, ...] -> [P, K, R*Q, ...]: rows of one prefix side by side
            return x.reshape(P, R, *x.shape[1:]).swapaxes(1, 2).reshape(P, K, R * x.shape[2], *x.shape[3:])

        def per_row(x):  # the inverse of per_prefix
            return x.reshape(P, K, R, -1, *x.shape[3:]).swapaxes(1, 2).reshape(B, K, -1, *x.shape[3:])

        prefix_scores = jnp.einsum(
            "pkqh,pkhs->pkqs", per_prefix(q_BKQH), keys_PKHS.astype(q_BKQH.dtype), preferred_element_type=jnp.float32
        )
        prefix_scores = per_row(prefix_scores).reshape(B, K, G, T, -1)
        allowed = _mask(positions_BT, jnp.repeat(key_pos_PS, R, axis=0), window)
        prefix_scores = jnp.where(allowed[:, None, None], prefix_scores, _MASKED)
        probs = jax.nn.softmax(jnp.concatenate([prefix_scores, scores_BKGTS], axis=-1), axis=-1)
        probs = probs.astype(q_BKQH.dtype).reshape(B, K, G * T, -1)
        prefix_probs, own_probs = probs[..., :-S], probs[..., -S:]
        own = jnp.einsum("bkqs,bksh->bkqh", own_probs, values_BKSH.astype(q_BKQH.dtype))
        shared = jnp.einsum("pkqs,pksh->pkqh", per_prefix(prefix_probs), values_PKSH.astype(q_BKQH.dtype))
        return own + per_row(shared)


CAUSAL_BLOCK = 64  # query positions per block of _causal_attention


def _causal_attention(q_BTNH, keys_BKSH, values_BKSH, positions_BT, key_pos_BT, segment_ids_BT, window):
    """Attention of a pass without a cache, where every token's keys are itself and the tokens
    before it in its row (the sequences of a packed row each numbered from 0): [B, T, N, H].

    The queries go in blocks of CAUSAL_BLOCK positions, each against the keys up to its last
    position only, so the blocks above the diagonal, masked anyway, are never computed: at 256
    positions in 4 blocks, 37.5% of the scores. The mask enters as an additive bias, and the
    softmax's division comes after the values' matmul, on [.., H] rather than [.., S]."""
    B, T, N, H = q_BTNH.shape
    K = keys_BKSH.shape[1]
    G = N // K
    q_BKGTH = q_BTNH.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4)
    allowed = _mask(positions_BT, key_pos_BT, window)
    if segment_ids_BT is not None:
        allowed &= segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]
    bias_BTS = jnp.where(allowed, 0.0, _MASKED).astype(jnp.float32)
    outs = []
    for start in range(0, T, CAUSAL_BLOCK):
        end = min(T, start + CAUSAL_BLOCK)
        block = end - start
        # The G query heads of a kv head and the block's positions form one [G*block, H] x [H, end]
        # matmul per (batch, kv head): no repeated keys.
        q_BKQH = q_BKGTH[:, :, :, start:end].reshape(B, K, G * block, H)
        scores = jnp.einsum(
            "bkqh,bksh->bkqs", q_BKQH, keys_BKSH[:, :, :end].astype(q_BTNH.dtype), preferred_element_type=jnp.float32
        )
        scores = scores.reshape(B, K, G, block, end) + bias_BTS[:, None, None, start:end, :end]
        # softmax with the division after the values' matmul: [.., H] divided, not [.., S]
        weights = jnp.exp(scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True)))
        total = jnp.sum(weights, axis=-1)[..., None]
        weights = weights.astype(q_BTNH.dtype).reshape(B, K, G * block, end)
        out = jnp.einsum("bkqs,bksh->bkqh", weights, values_BKSH[:, :, :end].astype(q_BTNH.dtype))
        outs.append(out.reshape(B, K, G, block, H) / total.astype(out.dtype))
    out_BKGTH = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=3)
    return out_BKGTH.transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)


def _mask(q_pos_BT, key_pos_BS, window):
    """Causal (by position, so padding and caches need no special case) and windowed."""
    q, k = q_pos_BT[:, :, None], key_pos_BS[:, None, :]
    allowed = (k >= 0) & (k <= q)
    if isinstance(window, int):
        return allowed & (q - k < window) if window else allowed
    return allowed & ((window == 0) | (q - k < window))  # a scanned layer's window
