"""The ablation grid of the demo, as data: which RL ingredients of the T1 recipe are switched, to what.

launch/sweep.py reads this file. Each factor maps a level label to the config overrides of that level;
BASELINE names the level of each factor that the baseline run uses. An ablation changes one factor at a
time away from the baseline; a grid runs every combination. Every level states its values explicitly (the
baseline too), so a run does not depend on what the demo config happens to set for these keys. The "on"
values come from the demo config, so the baseline is the demo itself.

Labels become part of run names and directories: letters, digits, "." and "-" only.
"""

from t1jax.apps.demo.config import demo_config

BASE_CONFIG = "configs/demo.py"

_rl = demo_config().rl  # the demo the sweep runs

FACTORS = {
    # K samples per prompt (oversampling); the paper uses 64.
    "K": {"16": {"rl.sampling.num_samples": 16}, "4": {"rl.sampling.num_samples": 4}},
    # Entropy bonus alpha; 0 removes the term from the loss.
    "entropy": {"on": {"rl.entropy_coef": _rl.entropy_coef}, "off": {"rl.entropy_coef": 0.0}},
    # Reference (anchor) of the KL term: moved every N steps, or frozen at the SFT model (0).
    "anchor": {"dynamic": {"rl.anchor_every": _rl.anchor_every}, "frozen": {"rl.anchor_every": 0}},
    # Reward penalties for truncated / repetitive / garbage samples.
    "penalties": {"on": {"rl.penalties": True}, "off": {"rl.penalties": False}},
}

BASELINE = {"K": "16", "entropy": "on", "anchor": "dynamic", "penalties": "on"}
