"""Import of GGUF files (llama.cpp's format): the model config from the file's metadata, every
tensor dequantized with the `gguf` package and placed in t1jax's params tree.

    model_config, params = load_gguf("gemma-3-270m-q4_k_m.gguf")
    logits = forward(model_config, params, tokens_BT)[0]

Supported architecture: Gemma 3 text ("gemma3"), read the way llama.cpp reads it, since the file
was written for llama.cpp: the metadata has no local RoPE base and no layer pattern, and llama.cpp
fixes them (10000; every 6th layer global); the attention scale is head_dim ** -0.5 except for the
62-layer (27B) model, d_model / num_heads; norms are stored as 1 + w (our parameter is w); q and k
are stored unpermuted (llama.cpp permutes them for the "llama" architecture only). Any tensor type
that `gguf.quants.dequantize` knows loads (F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K, ...).

The tokenizer in the same file: t1jax.data.gguf_vocab.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np

from t1jax.config import ModelConfig
from t1jax.config.model import DTYPES
from t1jax.errors import CheckpointError

SUPPORTED_ARCHITECTURES = ("gemma3",)

_REQUIRED = object()

# Gemma 3 per-layer tensors: GGUF name under blk.N -> (path under blocks.N, how to convert it).
# GGUF matrices are [out, in] (ggml lists the dimensions the other way round), as in HF.
_GEMMA3_LAYER = {
    "attn_q": (("attention", "q"), "in_heads"),
    "attn_k": (("attention", "k"), "in_heads"),
    "attn_v": (("attention", "v"), "in_heads"),
    "attn_output": (("attention", "o"), "out_heads"),
    "attn_q_norm": (("attention", "q_norm", "scale"), "norm"),
    "attn_k_norm": (("attention", "k_norm", "scale"), "norm"),
    "attn_norm": (("attention_norm", "scale"), "norm"),
    "post_attention_norm": (("post_attention_norm", "scale"), "norm"),
    "ffn_norm": (("mlp_norm", "scale"), "norm"),
    "post_ffw_norm": (("post_mlp_norm", "scale"), "norm"),
    "ffn_gate": (("mlp", "gate"), "linear"),
    "ffn_up": (("mlp", "up"), "linear"),
    "ffn_down": (("mlp", "down"), "linear"),
}
_GEMMA3_GLOBAL = {
    "token_embd": (("embed",), "embed"),
    "output_norm": (("final_norm", "scale"), "norm"),
    "output": (("unembed",), "linear"),  # only in files with an untied head
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def open_gguf(path: str | pathlib.Path):
    """A gguf.GGUFReader of `path` (memory-mapped: tensors are read on use); CheckpointError
    when the file is missing or not a GGUF file."""
    import gguf

    file = pathlib.Path(path)
    if not file.is_file():
        raise CheckpointError(f"GGUF file not found: {file}")
    try:
        return gguf.GGUFReader(file)
    except Exception as e:  # the reader raises ValueError, struct/numpy errors on garbage
        raise CheckpointError(f"{file} is not a readable GGUF file ({_one_line(e)})") from None


def gguf_value(reader, key: str, default: Any = _REQUIRED, path: str = ""):
    """The value of metadata `key` (a Python scalar, string or list)."""
    field = reader.fields.get(key)
    if field is None:
        if default is _REQUIRED:
            raise CheckpointError(f"{path or 'the GGUF file'}: metadata key {key!r} is missing")
        return default
    return field.contents()


def _float(value) -> float:
    """A float32 metadata value as the decimal it was written from (9.99999997e-07 -> 1e-06)."""
    return float(str(np.float32(value)))


def _layer_pattern(reader, arch: str, num_layers: int, path: str) -> int:
    """Every how-many-th layer attends globally: llama.cpp's fixed 6 for Gemma 3, or the file's
    own `attention.sliding_window_pattern` (a period, or one bool per layer: True = sliding)."""
    pattern = gguf_value(reader, f"{arch}.attention.sliding_window_pattern", None)
    if pattern is None:
        return 6
    if isinstance(pattern, int):
        return pattern
    sliding = [bool(x) for x in pattern]
    if len(sliding) == num_layers and all(sliding):
        return 0
    for period in range(1, num_layers + 1):
        if len(sliding) == num_layers and sliding == [(i + 1) % period != 0 for i in range(num_layers)]:
            return period
    raise CheckpointError(
        f"{path}: the sliding-window layer pattern {sliding} is not 'every n-th layer global' (unsupported)"
    )


def model_config_from_gguf(reader, path: str = "", dtype: str = "float32") -> ModelConfig:
    """The ModelConfig of the model in a GGUF file (its metadata and tensor names)."""
    arch = gguf_value(reader, "general.architecture", path=path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise CheckpointError(
            f"{path}: GGUF architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )

    def get(key, default=_REQUIRED):
        return gguf_value(reader, f"{arch}.{key}", default, path)

    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if get(key, None):
            raise CheckpointError(f"{path}: {arch}.{key} = {get(key)} is not supported (no logit softcapping)")
    scaling = get("rope.scaling.type", "none")
    if scaling not in ("none", "") and _float(get("rope.scaling.factor", 1.0)) != 1.0:
        raise CheckpointError(
            f"{path}: RoPE scaling {scaling!r} (factor {get('rope.scaling.factor', '?')}) is not supported for {arch}"
        )

    d_model, num_heads = int(get("embedding_length")), int(get("attention.head_count"))
    num_kv_heads = get("attention.head_count_kv", num_heads)
    if not isinstance(num_heads, int) or not isinstance(num_kv_heads, int):
        raise CheckpointError(f"{path}: per-layer head counts are not supported")
    head_dim = int(get("attention.key_length", d_model // num_heads))
    value_dim = int(get("attention.value_length", head_dim))
    rope_dims = int(get("rope.dimension_count", head_dim))
    if value_dim != head_dim or rope_dims != head_dim:
        raise CheckpointError(
            f"{path}: key_length {head_dim}, value_length {value_dim} and rope.dimension_count {rope_dims} "
            "must be equal (partial RoPE or unequal key/value heads are not supported)"
        )
    num_layers = int(get("block_count"))
    names = {t.name for t in reader.tensors}
    if "token_embd.weight" not in names:
        raise CheckpointError(f"{path}: tensor 'token_embd.weight' is missing")
    vocab_size = int(next(t for t in reader.tensors if t.name == "token_embd.weight").shape[-1])
    # llama.cpp (llama-model.cpp, LLM_ARCH_GEMMA3): query_pre_attn_scalar is head_dim, except for
    # the 27B model (62 layers) whose is d_model / num_heads, as in Google's configs.
    query_pre_attn_scalar = d_model // num_heads if num_layers == 62 else head_dim
    return ModelConfig(
        scan_layers="false",  # the form load_gguf builds; runs convert on load
        vocab_size=vocab_size,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        query_scale=query_pre_attn_scalar**-0.5,
        mlp_dim=int(get("feed_forward_length")),
        mlp_activation="gelu",
        rope_base=_float(get("rope.freq_base", 10000.0)),
        rope_local_base=_float(get("rope.freq_base_swa", 10000.0)),
        qk_norm=True,
        qkv_bias=False,
        post_norms=True,
        scale_embeddings=True,
        sliding_window=int(get("attention.sliding_window")),
        global_every=_layer_pattern(reader, arch, num_layers, path),
        tie_embeddings="output.weight" not in names,
        norm_eps=_float(get("attention.layer_norm_rms_epsilon")),
        norm_plus_one=True,
        param_dtype=dtype,
        compute_dtype=dtype,
    )


def hf_config_from_gguf(reader, config: ModelConfig) -> dict:
    """The Hugging Face config.json (Gemma3ForCausalLM, `gemma3_text`) of the model in a GGUF
    file whose ModelConfig is `config`: what an import keeps as the run's source config, so that
    `t1jax export` writes the model back as a Gemma 3 checkpoint."""
    arch = gguf_value(reader, "general.architecture")
    ids = {}
    for name, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding")):
        value = gguf_value(reader, f"tokenizer.ggml.{key}_token_id", None)
        if value is not None:
            ids[f"{name}_token_id"] = int(value)
    scale = config.query_scale or config.dim_per_head**-0.5
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.mlp_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.dim_per_head,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": int(gguf_value(reader, f"{arch}.context_length", 131072)),
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,
        "rope_local_base_freq": config.rope_local_base or config.rope_base,
        "rope_scaling": None,
        "sliding_window": config.sliding_window,
        "layer_types": [
            "sliding_attention" if config.window_of_layer(i) else "full_attention" for i in range(config.num_layers)
        ],
        "query_pre_attn_scalar": round(scale**-2),
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": config.tie_embeddings,
        **ids,
    }


def _dequantized(tensor, path: str, chunk_rows: int = 8192) -> np.ndarray:
    """The tensor's values as float32, in numpy's dimension order (ggml's reversed); dequantized
    a chunk of rows at a time, so that a large tensor costs its float32 size and no more."""
    import gguf

    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    rows = tensor.data.reshape(-1, tensor.data.shape[-1]) if tensor.data.ndim else tensor.data.reshape(1, 1)
    out = np.empty((rows.shape[0], shape[-1] if shape else 1), np.float32)
    if out.size != math.prod(shape):
        raise CheckpointError(f"{path}: tensor {tensor.name!r} holds {out.size} values, not {shape}")
    for start in range(0, rows.shape[0], chunk_rows):
        try:
            values = gguf.quants.dequantize(rows[start : start + chunk_rows], tensor.tensor_type)
        except NotImplementedError:
            raise CheckpointError(
                f"{path}: tensor {tensor.name!r} has type {tensor.tensor_type.name}, which cannot be dequantized"
            ) from None
        out[start : start + chunk_rows] = values.reshape(-1, out.shape[1])
    return out.reshape(shape)


def _convert(values: np.ndarray, kind: str, config: ModelConfig) -> np.ndarray:
    h = config.dim_per_head
    if kind == "norm":  # stored as 1 + w
        return values - np.float32(1.0)
    if kind == "in_heads":  # [heads * head_dim, D] -> [D, heads, head_dim]
        return values.T.reshape(values.shape[1], values.shape[0] // h, h)
    if kind == "out_heads":  # [D, heads * head_dim] -> [heads, head_dim, D]
        return values.T.reshape(values.shape[1] // h, h, values.shape[0])
    if kind == "linear":  # [out, in] -> [in, out]
        return values.T
    return values  # embed: [V, D]


def _target(name: str, num_layers: int):
    """(path in the params tree, kind) of a GGUF tensor name, or None."""
    base, _, suffix = name.rpartition(".")
    if suffix != "weight":
        return None
    if base in _GEMMA3_GLOBAL:
        return _GEMMA3_GLOBAL[base]
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _GEMMA3_LAYER:
        layer = int(parts[1])
        if layer < num_layers:
            path, kind = _GEMMA3_LAYER[parts[2]]
            return ("blocks", layer, *path), kind
    return None


def load_gguf(path, dtype=None) -> tuple[ModelConfig, dict]:
    """(ModelConfig, params) of a GGUF file: `path`, or a reader from `open_gguf` (so that the
    tokenizer is read from the same one: parsing Gemma's 262k-piece vocabulary takes ~10 s).

    params is the plain nested dict that t1jax.model.forward takes, of numpy arrays in host
    memory (put them on devices with the shardings you want), dequantized to float32 and cast to
    `dtype` (default float32).

    Raises CheckpointError (one line, naming the file) for a missing or malformed file, an
    unsupported architecture, option or tensor type, a missing, unexpected or misshapen tensor.
    """
    from t1jax.model.params import abstract_params

    dtype = np.dtype(dtype or "float32").name if not isinstance(dtype, str) else dtype
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if isinstance(path, str | pathlib.Path):
        reader, path = open_gguf(path), str(path)
    else:
        reader, path = path, str(getattr(path.data, "filename", None) or "the GGUF file")
    config = model_config_from_gguf(reader, path, dtype)
    expected = abstract_params(config)
    target_dtype = np.dtype(config.params_dtype)

    params: dict = {}
    for tensor in reader.tensors:
        target = _target(tensor.name, config.num_layers)
        if target is None:
            raise CheckpointError(f"{path}: unexpected tensor {tensor.name!r} for architecture gemma3")
        keys, kind = target
        node = expected
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                raise CheckpointError(f"{path}: unexpected tensor {tensor.name!r} for this model's config")
        values = _convert(_dequantized(tensor, path), kind, config)
        if values.shape != node.shape:
            raise CheckpointError(
                f"{path}: tensor {tensor.name!r} has shape {values.shape} once converted; the model wants {node.shape}"
            )
        parent = params
        for key in keys[:-1]:
            parent = parent.setdefault(key, {})
        if keys[-1] in parent:
            raise CheckpointError(f"{path}: tensor {tensor.name!r} appears twice")
        parent[keys[-1]] = np.ascontiguousarray(values, dtype=target_dtype)
        del values

    missing = _missing(expected, params)
    if missing:
        names = {".".join(map(str, keys)): name for name, keys in _gguf_names(config.num_layers)}
        first = names.get(missing[0], missing[0])
        raise CheckpointError(f"{path}: {len(missing)} tensor(s) missing, the first {first!r}")
    return config, params


def _gguf_names(num_layers: int):
    """(GGUF tensor name, params path) of every tensor a Gemma 3 file may hold."""
    for base, (keys, _) in _GEMMA3_GLOBAL.items():
        yield f"{base}.weight", keys
    for i in range(num_layers):
        for base, (keys, _) in _GEMMA3_LAYER.items():
            yield f"blk.{i}.{base}.weight", ("blocks", i, *keys)


def _missing(expected, found, prefix: str = "") -> list[str]:
    """Paths ("blocks.0.mlp.up") of the leaves of `expected` that `found` lacks."""
    if not isinstance(expected, dict):
        return [] if found is not None else [prefix]
    out = []
    for key, sub in expected.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out += _missing(sub, found.get(key) if isinstance(found, dict) else None, name)
    return out
