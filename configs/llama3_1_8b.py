"""Llama 3.1 8B (meta-llama/Llama-3.1-8B-Instruct's architecture, with its RoPE scaling) for T1
at pod scale: SFT on 8k-token traces, RL on 16 prompts x 16 samples of up to 8k tokens. Whether
it fits a slice:
    t1jax plan --config configs/llama3_1_8b.py --topology v5p-16
(On a v5p-8 the sampler's cache, 64.5 GiB per chip at 16 x 16 rows of 9k tokens, leaves the decode
step 2.4 GiB over: there, fewer samples or shorter responses.)
Weights: `t1jax import <its Hugging Face directory> --out DIR`, then rl.init_from=DIR."""

from t1jax.config import base_config


def get_config():
    c = base_config()
    m = c.model
    m.vocab_size, m.d_model, m.num_layers, m.mlp_dim = 128256, 4096, 32, 14336
    m.num_heads, m.num_kv_heads = 32, 8
    m.rope_base, m.norm_eps, m.tie_embeddings = 500000.0, 1e-5, False
    m.rope_scaling, m.rope_scaling_factor, m.rope_original_max_len = "llama3", 8.0, 8192
    m.rope_low_freq_factor, m.rope_high_freq_factor = 1.0, 4.0
    m.param_dtype, m.compute_dtype = "float32", "bfloat16"  # float32 master weights, bf16 matmuls
    m.remat = "full"  # layers scanned (auto), each keeping only its input for the backward pass
    m.attention = "splash"  # the TPU kernel: no [T, T] scores in memory
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.data.prompt_format = "chat"
    c.optim.learning_rate = 1e-5
    c.sampling.max_prompt_len = 1024
    c.sft.seq_len, c.sft.batch_size, c.sft.grad_accum_steps = 8192, 32, 4
    r = c.rl
    r.prompts_per_step, r.sampling.num_samples, r.sampling.max_new_tokens = 16, 16, 8192
    r.learning_rate, r.minibatches, r.grad_accum_steps = 1e-6, 4, 8  # 1 row per chip of a v5p-16
    c.run.workdir = "runs/llama3_1_8b"
    return c
