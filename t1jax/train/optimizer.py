"""AdamW with linear warmup, cosine decay and global-norm clipping, optionally on a subset of
the parameters (the rest frozen)."""

from __future__ import annotations

import re

import jax
import optax

from t1jax.errors import ConfigError


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


def param_name(path) -> str:
    """A parameter's dotted name, e.g. 'blocks.3.mlp.down' (what `trainable` patterns match)."""
    return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def trainable_labels(params, pattern: str):
    """'train' for every parameter whose dotted name the regex `pattern` matches (re.search), else
    'freeze'; an error if it matches none."""
    regex = re.compile(pattern)
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "train" if regex.search(param_name(path)) else "freeze", params
    )
    if "train" not in jax.tree.leaves(labels):
        names = [param_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        shown = ", ".join(names if len(names) <= 6 else [*names[:3], "...", *names[-2:]])
        raise ConfigError(
            f"optim.trainable (rl.trainable in RL) '{pattern}' matches no parameter "
            f"(re.search over names such as {shown})"
        )
    return labels


def make_optimizer(optim_config, total_steps: int, labels=None) -> optax.GradientTransformation:
    """The optimizer; with `labels` (trainable_labels of the parameters) only the 'train' ones are
    updated, the others keep their values (and get no optimizer state)."""
    o = optim_config
    schedule = learning_rate_schedule(o, total_steps)
    clip = optax.clip_by_global_norm(o.grad_clip_norm) if o.grad_clip_norm > 0 else optax.identity()
    tx = optax.chain(clip, optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay))
    if labels is None:
        return tx
    # labels as a tree, not a function of the params: optax.tree_map_params (the optimizer state's
    # shardings) calls init on placeholders that have no names
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
