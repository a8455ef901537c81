"""The demo's settings: sized so SFT, RL, evaluation and the report fit in 15 minutes on a
2-core laptop CPU (measured: docs/results/2026-12-04-demo-runs.md).

The task is linear equations with small coefficients (a*x + b = c with a <= 6, x <= 12,
b <= 40): a model of about 1M parameters learns the trace format and most of the arithmetic in a
few minutes, yet still makes mistakes, so there is something left for RL to do.
"""

from t1jax.config import base_config


def demo_config():
    c = base_config()
    c.run.workdir = "runs/demo"
    c.task_knobs = "max_coefficient=6,max_solution=12,max_constant=40"
    m = c.model
    m.d_model, m.num_heads, m.num_kv_heads, m.mlp_dim = 128, 4, 2, 512
    # Check drills first (t1jax/data/drills.py): the arithmetic of the traces' checks, so the model
    # computes a check instead of copying the right-hand side. They are learnt late (held-out
    # results right after 400 / 500 / 600 steps: 37% / 55% / 68%) at their own rate, 3e-3.
    c.demo.drill_steps = 500
    # The traces' rate: at 3e-3 they overwrite the drills' arithmetic (wrong attempts' checks 15%
    # right, forced), at 1e-3 they keep it (48%).
    c.optim.learning_rate = 1e-3
    s = c.sft
    s.task = "linear_equation"
    s.num_builtin_examples = 2000
    s.seq_len = 144  # covers 99.9% of the traces
    # Packed rows of ~1.5 traces each: 650 steps of 24 rows see ~24,000 traces in the time 32
    # unpacked rows see ~15,000 (benchmarks/sft_packing.py).
    s.pack, s.batch_size = True, 24
    s.num_steps = 650  # an upper bound (it sets the cosine schedule): SFT stops when validation loss flattens
    s.eval_every = 50
    s.patience, s.min_improvement = 2, 0.02
    c.checkpoint.save_every = 50
    r = c.rl
    r.task = "linear_equation"
    r.num_steps = 30
    r.prompts_per_step, r.sampling.num_samples = 8, 16
    r.sampling.max_new_tokens = 128
    r.learning_rate = 1e-4  # at 5e-4 the policy drifts ~0.2 nats/token in 10 steps and drops its checks
    c.demo.rl_checkpoints = 2
    ev = c.eval
    ev.num_problems, ev.sampling.num_samples = 200, 4
    ev.sampling.max_new_tokens = 128
    ev.budgets = "4,8,16,32,64,128"
    # Scaling curves from the 4 traces per problem that pass@1 samples (same temperature, same
    # seed), not one greedy trace: a greedy trace flips with the smallest change to the weights
    # (two SFT runs that differed in float rounding alone: 0.500 and 0.340 right at 128 tokens,
    # with sampled pass@1 0.297 and 0.300), so one greedy curve per model decided by luck which
    # model scaled better.
    ev.scaling_temperature, ev.scaling_traces = ev.sampling.temperature, ev.sampling.num_samples
    c.sampling.max_prompt_len = 64
    return c
