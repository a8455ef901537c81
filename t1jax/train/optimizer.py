"""AdamW with linear warmup, cosine decay and global-norm clipping, optionally on a subset of
the parameters (the rest frozen), and the step that applies its updates to the parameters.

Precision (the keys model.param_dtype and optim.moments_dtype): the optimizer's arithmetic is
float32 whatever the dtypes; its moments are stored in optim.moments_dtype, the parameters in
model.param_dtype, with no other copy of them. The new parameters are computed in float32 and
rounded to their dtype once per step: to nearest for float32, stochastically for bfloat16 and
float16 (`stochastic_round`), so that updates smaller than half a step of the low-precision grid
still move the weights by the right amount on average instead of rounding away.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
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
    if labels is not None:
        # labels as a tree, not a function of the params: optax.tree_map_params (the optimizer
        # state's shardings) calls init on placeholders that have no names
        tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
    return in_float32(tx, jnp.dtype(o.moments_dtype))


def _cast_floats(tree, dtype):
    """Every floating-point array of `tree` in `dtype` (step counts and placeholders unchanged)."""

    def cast(x):
        return x.astype(dtype) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def in_float32(tx: optax.GradientTransformation, state_dtype) -> optax.GradientTransformation:
    """`tx` computing in float32 on float32 copies of the gradients, parameters and its state,
    with its state (the moments) stored in `state_dtype`. The updates it returns are float32."""

    def init(params):
        return _cast_floats(tx.init(_cast_floats(params, jnp.float32)), state_dtype)

    def update(grads, state, params=None):
        f32 = lambda tree: _cast_floats(tree, jnp.float32)  # noqa: E731
        updates, state = tx.update(f32(grads), f32(state), None if params is None else f32(params))
        return updates, _cast_floats(state, state_dtype)

    return optax.GradientTransformation(init, update)


def stochastic_round(x, dtype, seed):
    """float32 `x` rounded to `dtype` up or down at random, to the upper neighbour with probability
    (x - lower) / (upper - lower): unbiased, E[result] = x, where rounding to nearest would turn
    every change smaller than half a grid step into none. Exactly representable values, infinities
    and NaN are returned unchanged; float32 is returned as is. `seed`: a uint32 scalar (the random
    numbers are uniform_hash's)."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32:
        return x.astype(dtype)
    nearest = x.astype(dtype)
    nearest32 = nearest.astype(jnp.float32)
    away = jnp.where(nearest32 > x, -jnp.inf, jnp.inf).astype(dtype)
    other = jnp.nextafter(nearest, away)  # the grid neighbour on x's other side
    # x - nearest32 and the gap are exact in float32; (x - inf) / (finite - inf) is NaN: no move
    p_other = (x - nearest32) / (other.astype(jnp.float32) - nearest32)
    return jnp.where(uniform_hash(seed, x.shape) < p_other, other, nearest)


def uniform_hash(seed, shape):
    """A number in [0, 1) for every element of an array of `shape`: 24 bits of a hash (MurmurHash3's
    32-bit finaliser) of the element's row-major index mixed with `seed`. Elementwise integer
    arithmetic, so XLA computes it inside the loop that uses it, where jax.random stores 16 bytes
    per element first (on CPU): more than a bfloat16 weight and its two moments together."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):  # built per axis, so a sharded array needs no reshape
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride % 2**32)
        stride *= shape[axis]
    h = _fmix32((index ^ _fmix32(jnp.asarray(seed, jnp.uint32))) * jnp.uint32(0x9E3779B9))
    return (h >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def _fmix32(h):
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def round_like(values, like, key):
    """Each float32 array of `values` in the dtype of its counterpart in `like`, with
    stochastic_round (a seed per array drawn from `key`)."""
    leaves, treedef = jax.tree.flatten(like)
    seeds = jax.random.bits(key, (max(1, len(leaves)),), jnp.uint32)
    values = treedef.flatten_up_to(values)
    return jax.tree.unflatten(
        treedef, [stochastic_round(v, x.dtype, seeds[i]) for i, (v, x) in enumerate(zip(values, leaves))]
    )


def apply_updates(params, updates, key):
    """params + updates computed in float32, each parameter rounded back to its own dtype
    (round_like; `key`: the step's rounding_key)."""
    summed = jax.tree.map(lambda p, u: p.astype(jnp.float32) + u.astype(jnp.float32), params, updates)
    return round_like(summed, params, key)


def summed_gradients(value_and_grad, params, micro_batches):
    """(the gradients of all micro-batches summed in float32, the outputs stacked on a new first
    axis) of value_and_grad(params, micro_batch) -> (outputs, gradients) over the first axis of
    `micro_batches`. float32, as the optimizer computes: a bfloat16 parameter's gradient is bfloat16."""

    def accumulate(total, micro_batch):
        outputs, grads = value_and_grad(params, micro_batch)
        return jax.tree.map(lambda t, g: t + g.astype(jnp.float32), total, grads), outputs

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    return jax.lax.scan(accumulate, zeros, micro_batches)


_ROUNDING_STREAM = 0x726F756E  # folded into the state's key: rounding draws apart from sampling's


def rounding_key(rng, step):
    """The key of a train step's stochastic rounding: a function of the state's key and step, so a
    resumed run rounds as the uninterrupted one would."""
    return jax.random.fold_in(jax.random.fold_in(rng, _ROUNDING_STREAM), step)
