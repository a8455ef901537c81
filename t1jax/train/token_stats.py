"""Per-token log-probabilities and entropies from the model's final hidden states, a chunk of
positions at a time, so that no [B, T, vocab] float32 tensor exists in the forward pass or the
backward pass (with a 262k vocabulary, 8k tokens of logits are 8.6 GB).

A lax.scan runs over chunks of positions. Each chunk's gradient is written by hand
(`_chunk_stats`): the backward pass recomputes the chunk's logits from its hidden states and
turns them into the logits' cotangent in one elementwise pass, so a chunk needs about two
[rows, chunk, vocab] float32 buffers at a time, where automatic differentiation of the same
formulas keeps about five. Within a chunk the math is the unchunked one, so the results agree
with it to float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from t1jax.model import logits_from_hidden
from t1jax.train.objectives import token_entropy


def chunk_length(chunk_tokens: int, rows_per_device: int) -> int:
    """Positions per chunk so that a chunk holds about `chunk_tokens` tokens on each device (at
    least one position); 0 (no chunking) when chunk_tokens is 0."""
    if chunk_tokens <= 0:
        return 0
    return max(1, chunk_tokens // max(1, rows_per_device))


def logits_stats(logits_BTV, targets_BT, with_entropy: bool = True):
    """log p(target) at every position, and the entropy of the whole distribution (None without
    with_entropy), from float32 logits."""
    log_probs = jax.nn.log_softmax(logits_BTV, axis=-1)
    logp_BT = jnp.take_along_axis(log_probs, targets_BT[..., None], axis=-1)[..., 0]
    return logp_BT, token_entropy(logits_BTV) if with_entropy else None


def token_stats(hidden_BTD, unembedding_DV, targets_BT, chunk_len: int, with_entropy: bool = True):
    """(logp_BT, entropy_BT or None) of the logits logits_from_hidden(hidden, unembedding), float32.

    chunk_len: positions per chunk; 0, or at least T, computes all positions at once. A T that
    chunk_len does not divide is padded to whole chunks (the padding is dropped from the result).
    """
    B, T, D = hidden_BTD.shape
    if chunk_len <= 0 or chunk_len >= T:
        logp, entropy = _chunk_stats(hidden_BTD, unembedding_DV, targets_BT)
        return logp, entropy if with_entropy else None
    n = -(-T // chunk_len)
    pad = n * chunk_len - T
    # [n, B, chunk, ...]: the rows stay on their axis, so a batch sharded by rows stays so
    hidden = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0))).reshape(B, n, chunk_len, D).swapaxes(0, 1)
    targets = jnp.pad(targets_BT, ((0, 0), (0, pad))).reshape(B, n, chunk_len).swapaxes(0, 1)

    def body(_, chunk):
        return None, _chunk_stats(chunk[0], unembedding_DV, chunk[1])

    _, (logp, entropy) = jax.lax.scan(body, None, (hidden, targets))
    logp, entropy = (x.swapaxes(0, 1).reshape(B, n * chunk_len)[:, :T] for x in (logp, entropy))
    return logp, entropy if with_entropy else None


@jax.custom_vjp
def _chunk_stats(h_BCD, unembedding_DV, targets_BC):
    return logits_stats(logits_from_hidden(h_BCD, unembedding_DV), targets_BC)


def _chunk_stats_forward(h_BCD, unembedding_DV, targets_BC):
    logp, entropy = _chunk_stats(h_BCD, unembedding_DV, targets_BC)
    # the chunk's inputs, not its logits: the backward pass recomputes them
    return (logp, entropy), (h_BCD, unembedding_DV, targets_BC, entropy)


def _chunk_stats_backward(residuals, cotangents):
    h_BCD, unembedding_DV, targets_BC, entropy_BC = residuals
    g_logp, g_entropy = (g[..., None] for g in cotangents)
    log_probs = jax.nn.log_softmax(logits_from_hidden(h_BCD, unembedding_DV), axis=-1)
    probs = jnp.exp(log_probs)
    # d log p_y / dz = onehot(y) - p;  d H / dz = -p (log p + H)
    target = jnp.arange(log_probs.shape[-1]) == targets_BC[..., None]
    dz = jnp.where(target, g_logp, 0.0) - probs * (g_logp + g_entropy * (log_probs + entropy_BC[..., None]))
    dt = h_BCD.dtype  # the matmuls in the compute dtype, as the forward's, accumulating in float32
    dz = dz.astype(dt)
    dh = _matmul_f32("bcv,dv->bcd", dz, unembedding_DV.astype(dt))
    du = _matmul_f32("bcd,bcv->dv", h_BCD, dz)
    return dh.astype(dt), du.astype(unembedding_DV.dtype), None


def _matmul_f32(spec: str, x, y):
    """einsum(spec, x, y) with float32 products and sums. On CPU the operands are cast to float32
    first, the same arithmetic (a product of two bfloat16 numbers is exact in float32): XLA's CPU
    runtime cannot run some bf16 x bf16 -> f32 matmuls ("Unsupported element type for DotThunk")."""
    if jax.default_backend() == "cpu":
        x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    return jnp.einsum(spec, x, y, preferred_element_type=jnp.float32)


_chunk_stats.defvjp(_chunk_stats_forward, _chunk_stats_backward)
