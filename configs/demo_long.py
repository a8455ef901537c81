"""The demo with 20x its RL: 600 steps instead of 30 (RL then takes about 40 minutes on a 2-core CPU).

Drills, SFT, evaluation and report are those of configs/demo.py; RL runs long enough for its
lift to show (README.md, "RL with more steps"). To reuse a finished demo's SFT model:
    t1jax demo --config configs/demo_long.py --config.demo.sft_dir=runs/demo/sft
"""

from t1jax.demo.config import demo_config


def get_config():
    c = demo_config()
    c.run.workdir = "runs/demo_long"
    c.rl.num_steps = 600
    # Scaling curves at steps 150, 300, 450 and 600; an interrupted run resumes from the last.
    c.demo.rl_checkpoints = 4
    return c
