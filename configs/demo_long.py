"""The demo with 800 RL steps instead of 30: the run that meets the demo's quality goals
(docs/results/2026-12-04-demo-long-800-steps.md); RL then takes about an hour on a 2-core CPU.

Drills, SFT, evaluation and report are those of configs/demo.py. To reuse a finished demo's SFT
model:
    t1jax demo --config configs/demo_long.py --config.demo.sft_dir=runs/demo/sft
"""

from t1jax.apps.demo.config import demo_config


def get_config():
    c = demo_config()
    c.run.workdir = "runs/demo_long"
    c.rl.num_steps = 800
    # Scaling curves at steps 200, 400, 600 and 800: the checkpoints an interrupted run resumes from.
    c.demo.rl_checkpoints = 4
    return c
