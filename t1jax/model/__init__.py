"""The Flax NNX decoder and its pure-function interface (params as plain nested dicts)."""

from t1jax.config import ModelConfig  # defined with the config: the `model` section is built from it
from t1jax.model.gguf import load_gguf
from t1jax.model.hf import load_hf
from t1jax.model.kv_cache import KVCache
from t1jax.model.params import (
    abstract_params,
    forward,
    hidden_and_unembedding,
    init_params,
    logical_axes,
    make_model,
    stack_layers,
    unstack_layers,
)
from t1jax.model.transformer import Transformer, logits_from_hidden

__all__ = [
    "KVCache",
    "ModelConfig",
    "Transformer",
    "abstract_params",
    "forward",
    "hidden_and_unembedding",
    "init_params",
    "load_gguf",
    "load_hf",
    "logical_axes",
    "logits_from_hidden",
    "make_model",
    "stack_layers",
    "unstack_layers",
]
