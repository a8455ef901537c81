"""Pure functions over the model: params are plain nested dicts of arrays.

Train steps, the sampler and checkpoints work with `params` dicts so that jit shardings,
optax and Orbax see ordinary pytrees; `forward` rebuilds the NNX module inside the trace,
which costs nothing at run time.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from t1jax.config import ModelConfig
from t1jax.model.transformer import Transformer


def make_model(config: ModelConfig, seed: int = 0) -> Transformer:
    return Transformer(config, nnx.Rngs(params=seed))


@functools.lru_cache(maxsize=32)
def _graph_and_abstract_state(config: ModelConfig):
    abstract_model = nnx.eval_shape(lambda: make_model(config))
    return nnx.split(abstract_model)


def init_params(config: ModelConfig, seed: int = 0) -> dict:
    """Freshly initialised params; jit it with out_shardings to create them sharded."""
    return nnx.to_pure_dict(nnx.state(make_model(config, seed)))


def abstract_params(config: ModelConfig) -> dict:
    """ShapeDtypeStructs of the params, without allocating them."""
    return jax.eval_shape(lambda: init_params(config))


def logical_axes(config: ModelConfig) -> dict:
    """The logical axis names of every param, in the same nested-dict structure."""
    _, state = _graph_and_abstract_state(config)
    axes = jax.tree.map(
        lambda v: v.get_metadata()["logical_axes"], state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    axes = nnx.to_pure_dict(axes)
    if config.scans_layers:  # the layer axis of stacked blocks is never sharded
        axes["blocks"] = jax.tree.map(lambda a: (None, *a), axes["blocks"], is_leaf=lambda x: isinstance(x, tuple))
    return axes


def stack_layers(params: dict) -> dict:
    """The parameters of an unrolled model (blocks 0..L-1) in a scanned model's form (one block
    whose leaves have a leading layer axis); `unstack_layers` is its inverse."""
    blocks = params["blocks"]
    layers = [blocks[i] for i in sorted(blocks, key=int)]
    return {**params, "blocks": jax.tree.map(lambda *xs: jax.numpy.stack(xs), *layers)}


def unstack_layers(params: dict) -> dict:
    blocks = params["blocks"]
    num_layers = jax.tree.leaves(blocks)[0].shape[0]
    return {**params, "blocks": {i: jax.tree.map(lambda x, i=i: x[i], blocks) for i in range(num_layers)}}


def forward(
    config: ModelConfig,
    params: dict,
    tokens_BT,
    positions_BT=None,
    mask_BT=None,
    cache=None,
    prefix=None,
    segment_ids_BT=None,
):
    """Runs the model with `params`; returns (logits_BTV float32, updated cache or None).
    See Transformer.__call__ for the arguments."""
    graphdef, _ = _graph_and_abstract_state(config)
    model = nnx.merge(graphdef, params)
    return model(tokens_BT, positions_BT, mask_BT, cache, prefix, segment_ids_BT)


def hidden_and_unembedding(
    config: ModelConfig, params: dict, tokens_BT, positions_BT=None, mask_BT=None, segment_ids_BT=None
):
    """The final normed hidden states [B, T, d_model] of a forward pass without a cache, and the
    [d_model, vocab] output matrix: `logits_from_hidden` of the two is forward's logits. For
    per-token statistics over a large vocabulary without the full logits (token_stats)."""
    graphdef, _ = _graph_and_abstract_state(config)
    model = nnx.merge(graphdef, params)
    hidden_BTD, _ = model.hidden_states(tokens_BT, positions_BT, mask_BT, segment_ids_BT=segment_ids_BT)
    return hidden_BTD, model.unembedding()


def get_path(tree: dict, path: tuple):
    """The entry of a nested dict at `path` (a tuple of keys)."""
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree: dict, path: tuple, value) -> None:
    """Sets the entry at `path`, creating the dicts on the way."""
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def paths_and_leaves(tree: dict, prefix: tuple = ()):
    """(path, leaf) of every leaf of a nested dict (leaves: anything but a dict)."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from paths_and_leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value
