"""SFT of the built-in demo model on trial-and-error traces of the built-in countdown task
(a few minutes on a laptop CPU)."""

from t1jax.config import base_config


def get_config():
    c = base_config()
    c.run.workdir = "runs/sft_demo"
    c.sft.num_steps = 200
    c.sft.seq_len = 192
    return c
