"""The Flax NNX decoder and its pure-function interface (params as plain nested dicts)."""

from t1jax.model.config import ModelConfig
from t1jax.model.functional import abstract_params, forward, init_params, logical_axes, make_model
from t1jax.model.kv_cache import KVCache
from t1jax.model.transformer import Transformer

__all__ = [
    "KVCache",
    "ModelConfig",
    "Transformer",
    "abstract_params",
    "forward",
    "init_params",
    "logical_axes",
    "make_model",
]
