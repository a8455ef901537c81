"""What every benchmark reports: the machine it ran on and that machine's matmul peak."""

from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp


def machine_info() -> dict:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu_model)
    except OSError:
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    import flax

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "torch": torch_version,
        "jax_backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
    }


def matmul_peak(n: int = 2048, reps: int = 10) -> dict:
    """FLOP/s of the best of `reps` jitted float32 n x n matmuls (after warm-up)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    for _ in range(3):
        dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return {"n": n, "best_s": best, "flops_per_s": 2 * n**3 / best}


def llama_config(mc, max_positions: int):
    """A transformers LlamaConfig of t1jax's model shape (the peer a user would otherwise pick)."""
    import transformers

    return transformers.LlamaConfig(
        vocab_size=mc.vocab_size,
        hidden_size=mc.d_model,
        intermediate_size=mc.mlp_dim,
        num_hidden_layers=mc.num_layers,
        num_attention_heads=mc.num_heads,
        num_key_value_heads=mc.num_kv_heads,
        head_dim=mc.dim_per_head,
        max_position_embeddings=max_positions,
        rms_norm_eps=mc.norm_eps,
        rope_theta=mc.rope_base,
        tie_word_embeddings=True,
        attention_dropout=0.0,
    )
