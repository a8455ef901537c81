"""The demo's settings: sized so SFT, RL, evaluation and the report fit in 15 minutes on a
2-core laptop CPU (measured; see README.md), and still show T1's effects."""

from t1jax.defaults import base_config


def demo_config():
    c = base_config()
    c.run.workdir = "runs/demo"
    m = c.model
    m.d_model, m.num_heads, m.num_kv_heads, m.mlp_dim = 128, 4, 2, 512
    s = c.sft
    s.task = "linear_equation"
    s.seq_len = 192
    s.num_steps = 600  # an upper bound: SFT stops when the validation loss stops improving
    s.eval_every = 50
    s.patience = 2
    c.optim.learning_rate = 3e-3
    c.checkpoint.save_every = 50
    r = c.rl
    r.task = "linear_equation"
    r.num_steps = 30
    r.prompts_per_step, r.samples_per_prompt = 8, 16
    r.max_new_tokens = 160
    r.learning_rate = 2e-4
    ev = c.eval
    ev.num_problems, ev.num_samples = 200, 4
    c.sampling.max_prompt_len = 64
    return c
