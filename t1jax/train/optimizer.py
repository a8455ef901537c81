"""AdamW with linear warmup, cosine decay and global-norm clipping."""

from __future__ import annotations

import optax


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to the peak, then cosine decay to peak * final_lr_fraction."""
    peak = optim_config.learning_rate
    warmup = min(optim_config.warmup_steps, total_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=peak * optim_config.final_lr_fraction,
    )


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    o = optim_config
    schedule = learning_rate_schedule(o, total_steps)
    clip = optax.clip_by_global_norm(o.grad_clip_norm) if o.grad_clip_norm > 0 else optax.identity()
    return optax.chain(clip, optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay))
