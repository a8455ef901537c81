"""Hugging Face checkpoints in and out: Qwen2 / Qwen2.5, Llama 3.x and Gemma 3 text.

config.py          config.json <-> ModelConfig (both the published and the transformers 5 keys)
names.py           every parameter's HF tensor name and layout
safetensors_io.py  reading blocks of (sharded) safetensors; writing shards and their index
checkpoint.py      load_hf (each device reads its own blocks), save_hf
"""

from t1jax.model.hf.checkpoint import hf_shardings, load_hf, load_hf_params, read_hf_config, save_hf
from t1jax.model.hf.config import FAMILIES, HFConfig, hf_config_for, model_config_from_hf, parse_hf_config

__all__ = [
    "FAMILIES",
    "HFConfig",
    "hf_config_for",
    "hf_shardings",
    "load_hf",
    "load_hf_params",
    "model_config_from_hf",
    "parse_hf_config",
    "read_hf_config",
    "save_hf",
]
