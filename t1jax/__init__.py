"""t1jax: the T1 recipe (SFT on trial-and-error chains of thought, RL with oversampling,
entropy bonus and a dynamic anchor, inference-scaling evaluation) on JAX, from a laptop CPU
to TPU pod slices."""

__version__ = "0.1.0"
