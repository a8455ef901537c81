"""The demo's plumbing in about a minute: a tiny model and a few steps of each stage (no quality)."""

from t1jax.apps.demo.config import demo_config


def get_config():
    c = demo_config()
    c.run.workdir = "runs/demo_tiny"
    c.run.progress = False
    c.run.log_every = 1
    m = c.model
    m.vocab_size, m.d_model, m.num_layers, m.num_heads, m.num_kv_heads, m.mlp_dim = 320, 32, 2, 4, 2, 64
    s = c.sft
    s.num_builtin_examples, s.seq_len, s.batch_size = 200, 160, 8
    s.num_steps, s.eval_every, s.patience = 6, 3, 2
    c.optim.warmup_steps = 2
    c.checkpoint.save_every = 3
    r = c.rl
    r.num_steps, r.prompts_per_step, r.num_prompts = 4, 2, 40
    r.sampling.num_samples, r.sampling.max_new_tokens = 4, 24
    r.anchor_every, r.warmup_steps, r.max_refill_rounds = 2, 1, 0
    c.demo.rl_checkpoints = 2
    c.demo.drill_steps, c.demo.drill_batch_size = 3, 8
    ev = c.eval
    ev.num_problems, ev.budgets, ev.answer_tokens = 6, "4,16", 8
    ev.sampling.num_samples, ev.sampling.max_new_tokens = 2, 16
    ev.scaling_traces = 2
    return c
