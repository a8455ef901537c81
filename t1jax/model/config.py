"""The model's shape and options as a frozen (hashable, jit-static) dataclass."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 512
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4
    head_dim: int = 0
    mlp_dim: int = 768
    mlp_activation: str = "silu"
    rope_base: float = 10000.0
    qk_norm: bool = False
    qkv_bias: bool = False
    post_norms: bool = False
    scale_embeddings: bool = False
    sliding_window: int = 0
    global_every: int = 0
    tie_embeddings: bool = True
    norm_eps: float = 1e-6
    param_dtype: str = "float32"
    compute_dtype: str = "float32"

    @classmethod
    def from_config(cls, model_section) -> ModelConfig:
        """Builds it from the `model` section of a t1jax config."""
        return cls(**model_section.to_dict())

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.d_model // self.num_heads

    @property
    def params_dtype(self):
        return jnp.dtype(self.param_dtype)

    @property
    def activations_dtype(self):
        return jnp.dtype(self.compute_dtype)

    def window_of_layer(self, layer: int) -> int:
        """Sliding-window size of a layer (0: global attention)."""
        if self.sliding_window == 0:
            return 0
        if self.global_every and (layer + 1) % self.global_every == 0:
            return 0
        return self.sliding_window

    def num_params(self) -> int:
        """Closed-form parameter count (the tests compare it with the real model)."""
        d, h, n, kv, f = self.d_model, self.dim_per_head, self.num_heads, self.num_kv_heads, self.mlp_dim
        attention = d * n * h + 2 * d * kv * h + n * h * d
        attention += (n * h + 2 * kv * h) if self.qkv_bias else 0
        attention += 2 * h if self.qk_norm else 0
        mlp = 3 * d * f
        norms = 2 * d + (2 * d if self.post_norms else 0)
        per_layer = attention + mlp + norms
        embeddings = self.vocab_size * d * (1 if self.tie_embeddings else 2)
        return embeddings + self.num_layers * per_layer + d  # + final norm

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token: 6 per weight of every matmul (forward + backward), plus
        attention scores and values, 12 * layers * heads * head_dim * seq_len (causal masking
        not subtracted, the PaLM/MaxText convention). Embedding lookups and norms excluded."""
        d, h, n, kv, f = self.d_model, self.dim_per_head, self.num_heads, self.num_kv_heads, self.mlp_dim
        per_layer = d * n * h + 2 * d * kv * h + n * h * d + 3 * d * f
        matmul_weights = self.num_layers * per_layer + d * self.vocab_size  # + output projection
        return 6 * matmul_weights + 12 * self.num_layers * n * h * seq_len
