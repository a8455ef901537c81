"""T1 reinforcement learning: `loop.rl_step` is the recipe, top-down."""
