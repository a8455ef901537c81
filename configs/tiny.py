"""A model and run small enough for tests and smoke checks (seconds on one CPU core)."""

from t1jax.config import base_config


def get_config():
    c = base_config()
    m = c.model
    m.vocab_size, m.d_model, m.num_layers, m.num_heads, m.num_kv_heads, m.mlp_dim = 320, 32, 2, 4, 2, 64
    c.sft.seq_len = 160
    c.sft.batch_size = 8
    c.sft.num_steps = 6
    c.sft.eval_every = 3
    c.sft.num_builtin_examples = 200
    c.optim.warmup_steps = 2
    c.run.workdir = "runs/tiny"
    c.run.log_every = 1
    c.run.progress = False
    c.checkpoint.save_every = 2
    r = c.rl
    r.num_steps, r.prompts_per_step, r.num_prompts = 4, 4, 40
    r.sampling.num_samples, r.sampling.max_new_tokens = 4, 24
    r.anchor_every, r.warmup_steps, r.max_refill_rounds = 2, 1, 1
    c.sampling.max_prompt_len = 64
    return c
