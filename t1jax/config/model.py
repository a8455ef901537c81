"""The model's shape and options as a frozen (hashable, jit-static) dataclass, and the config's
`model` section built from it: `ModelConfig` is the one place the model's keys and defaults are
written down."""

from __future__ import annotations

import dataclasses

import ml_collections

from t1jax.config.require import require

DTYPES = ("float32", "bfloat16", "float16")
SCAN_FROM_LAYERS = 8
REMAT_POLICIES = ("none", "full", "save_dots", "save_dots_no_batch", "save_qkv_proj", "save_qkv_out_proj")
ATTENTION_IMPLS = ("xla", "dot_product_attention", "splash")
# What only changes how the model runs, not what it computes; with the dtypes, not its weights
# either: a run's weights load whatever these say.
RUN_OPTIONS = ("scan_layers", "remat", "attention")
EXECUTION_FIELDS = ("param_dtype", "compute_dtype", *RUN_OPTIONS)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer. The default is the small built-in demo model."""

    vocab_size: int = 512
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4  # grouped-query attention; == num_heads is plain multi-head
    head_dim: int = 0  # 0: d_model // num_heads
    query_scale: float = 0.0  # queries are multiplied by it; 0: head_dim**-0.5 (Gemma-3: query_pre_attn_scalar**-0.5)
    mlp_dim: int = 768
    mlp_activation: str = "silu"  # gated MLP: "silu" (SwiGLU, Llama/Qwen) or "gelu" (GeGLU, Gemma)
    rope_base: float = 10000.0
    rope_local_base: float = 0.0  # RoPE base of the sliding-window layers (Gemma-3: 10000); 0: rope_base
    # "" (none), "llama3" (Llama 3.1+'s adjusted inverse frequencies) or "linear" (frequencies divided by
    # the factor: Gemma-3 4B+); in every layer that uses rope_base (not the sliding layers' rope_local_base)
    rope_scaling: str = ""
    rope_scaling_factor: float = 1.0  # llama3 and linear: factor (e.g. 8 or 32)
    rope_low_freq_factor: float = 1.0  # llama3: low_freq_factor
    rope_high_freq_factor: float = 4.0  # llama3: high_freq_factor
    rope_original_max_len: int = 8192  # llama3: original_max_position_embeddings
    qk_norm: bool = False  # RMSNorm on queries and keys per head (Gemma-3, Qwen3)
    qkv_bias: bool = False  # bias on q/k/v projections (Qwen2.5)
    post_norms: bool = False  # extra RMSNorm after attention and MLP outputs (Gemma-2/3)
    scale_embeddings: bool = False  # multiply embeddings by sqrt(d_model) (Gemma)
    sliding_window: int = 0  # 0: every layer attends globally
    global_every: int = 0  # with a window: every n-th layer is global (Gemma-3: 6); 0: none
    tie_embeddings: bool = True
    norm_eps: float = 1e-6
    # Every RMSNorm multiplies by (1 + w) in float32, w initialised to 0 (Gemma). The parameter stays
    # w: folding 1 + w into a bf16 weight rounds it, and weight decay would pull the scale to 0.
    norm_plus_one: bool = False
    # Precision. param_dtype: how the weights are stored (checkpoints, optimizer, anchor, sampler);
    # it is the only copy, there is no float32 master. compute_dtype: the activations, KV cache and
    # matmul inputs (weights are cast to it on use). Logits, log-probs, entropies, KL, losses and the
    # optimizer's arithmetic are float32 whatever these say (optim.moments_dtype: its moments).
    # Recommended on TPU/GPU: param_dtype float32 + compute_dtype bfloat16. param_dtype bfloat16
    # halves the weights' memory for memory-bound cases: each step's new weights are rounded to
    # bfloat16 stochastically (unbiased, so small updates are not lost), but a weight keeps only ~3
    # significant digits. float32 is as fast as bfloat16 on CPU.
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    # How the layers run (not what they are: a run's weights load whatever these say).
    # scan_layers: "true" applies the layers as one jax.lax.scan over parameters stacked on a
    # leading layer axis (compile time independent of depth), "false" unrolls them, "auto" scans
    # from SCAN_FROM_LAYERS layers on. Checkpoints of either form load into the other.
    scan_layers: str = "auto"
    # remat: what the backward pass keeps of each layer's forward pass (REMAT_POLICIES); the rest
    # is recomputed. "none" keeps everything; "full" keeps only the layer's input.
    remat: str = "none"
    # attention of a pass without a KV cache (training, scoring, prefill is always "xla"):
    # "xla" (einsum), "dot_product_attention" (jax.nn's; cudnn on GPU) or "splash" (the TPU
    # Pallas kernel; interpreted off TPU)
    attention: str = "xla"
    # LoRA (t1jax.model.lora): rank-`lora_rank` adapters (0: none) on the weights whose dotted names
    # (blocks.3.attention.q; scanned: blocks.attention.q) match the regex `lora_targets` (add
    # `|^embed$` for the embedding), scaled by lora_alpha / lora_rank; only the adapters train.
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: str = r"attention\.(q|k|v|o)$|mlp\.(gate|up|down)$"

    @classmethod
    def from_config(cls, model_section) -> ModelConfig:
        """Builds it from the `model` section of a t1jax config."""
        return cls(**model_section.to_dict())

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.d_model // self.num_heads

    # jax.numpy is imported on use: the config package stays free of JAX, so that `t1jax --help`
    # and config errors are fast.
    @property
    def params_dtype(self):
        import jax.numpy as jnp

        return jnp.dtype(self.param_dtype)

    @property
    def activations_dtype(self):
        import jax.numpy as jnp

        return jnp.dtype(self.compute_dtype)

    @property
    def scans_layers(self) -> bool:
        """Whether the layers' parameters are stacked and applied by a scan (see scan_layers)."""
        if self.scan_layers == "auto":
            return self.num_layers >= SCAN_FROM_LAYERS
        return self.scan_layers == "true"

    def window_of_layer(self, layer: int) -> int:
        """Sliding-window size of a layer (0: global attention)."""
        if self.sliding_window == 0:
            return 0
        if self.global_every and (layer + 1) % self.global_every == 0:
            return 0
        return self.sliding_window

    def rope_of_layer(self, layer: int) -> tuple[float, str]:
        """(RoPE base, RoPE scaling) of a layer: sliding-window layers may have their own base
        (Gemma-3), and then no scaling (transformers scales only the global layers' RoPE)."""
        if self.rope_local_base and self.window_of_layer(layer):
            return self.rope_local_base, ""
        return self.rope_base, self.rope_scaling

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


def model_section() -> ml_collections.ConfigDict:
    """The `model` section: every field of ModelConfig with its default."""
    return ml_collections.ConfigDict({f.name: f.default for f in dataclasses.fields(ModelConfig)})


def check_model(config) -> None:
    m = config.model
    for key in ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "mlp_dim"):
        require(m[key] > 0, f"model.{key} must be positive, got {m[key]}")
    require(
        m.num_heads % m.num_kv_heads == 0,
        f"model.num_heads ({m.num_heads}) must be divisible by model.num_kv_heads ({m.num_kv_heads})",
    )
    require(
        m.head_dim > 0 or m.d_model % m.num_heads == 0,
        f"model.d_model ({m.d_model}) must be divisible by model.num_heads ({m.num_heads}) when model.head_dim is 0",
    )
    require(
        m.head_dim >= 0 and (m.head_dim or m.d_model // m.num_heads) % 2 == 0,
        "the head dimension must be even (RoPE rotates pairs)",
    )
    require(
        m.mlp_activation in ("silu", "gelu"), f"model.mlp_activation must be 'silu' or 'gelu', got {m.mlp_activation!r}"
    )
    for key in ("param_dtype", "compute_dtype"):
        require(m[key] in DTYPES, f"model.{key} must be one of {DTYPES}, got {m[key]!r}")
    require(m.sliding_window >= 0 and m.global_every >= 0, "model.sliding_window and model.global_every must be >= 0")
    require(m.rope_base > 0 and m.norm_eps > 0, "model.rope_base and model.norm_eps must be positive")
    require(m.rope_local_base >= 0, f"model.rope_local_base must be >= 0 (0: rope_base), got {m.rope_local_base}")
    require(m.query_scale >= 0, f"model.query_scale must be >= 0 (0: head_dim ** -0.5), got {m.query_scale}")
    require(
        m.scan_layers in ("auto", "true", "false"),
        f"model.scan_layers must be 'auto', 'true' or 'false', got {m.scan_layers!r}",
    )
    require(m.remat in REMAT_POLICIES, f"model.remat must be one of {REMAT_POLICIES}, got {m.remat!r}")
    require(m.attention in ATTENTION_IMPLS, f"model.attention must be one of {ATTENTION_IMPLS}, got {m.attention!r}")
    require(m.lora_rank >= 0, f"model.lora_rank must be >= 0 (0: no LoRA), got {m.lora_rank}")
    require(
        m.rope_scaling in ("", "llama3", "linear"),
        f"model.rope_scaling must be '', 'llama3' or 'linear', got {m.rope_scaling!r}",
    )
    for key in ("rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_max_len"):
        require(m[key] > 0, f"model.{key} must be positive, got {m[key]}")
    require(
        m.rope_scaling != "llama3" or m.rope_low_freq_factor < m.rope_high_freq_factor,
        f"model.rope_low_freq_factor ({m.rope_low_freq_factor}) must be below model.rope_high_freq_factor"
        f" ({m.rope_high_freq_factor})",
    )
