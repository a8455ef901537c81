"""Hugging Face model directories in and out: `load_hf` reads one onto a mesh, each device
reading only the block of each tensor it owns; `save_hf` writes params as one."""

from __future__ import annotations

import collections
import json
import pathlib

import jax
import ml_dtypes
import numpy as np

from t1jax import parallel
from t1jax.config import ModelConfig, base_config
from t1jax.errors import CheckpointError
from t1jax.model.hf.config import HFConfig, hf_config_for, model_config_from_hf, parse_hf_config
from t1jax.model.hf.names import Tensor, tensors
from t1jax.model.hf.safetensors_io import SafetensorsReader, write_sharded
from t1jax.model.params import abstract_params, get_path, logical_axes, set_path

CONFIG_FILE = "config.json"
# Where the text model's tensors sit: Llama / Qwen2 / Gemma 3 text; Gemma 3 (multimodal) as
# transformers 5 saves it; as the published Gemma 3 4B+ checkpoints hold it.
PREFIXES = (("model.", "lm_head.weight"), ("model.language_model.", "lm_head.weight"))
PREFIXES += (("language_model.model.", "language_model.lm_head.weight"),)
FLOAT_DTYPES = ("F32", "BF16", "F16", "F64")
NP_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16)}


def read_hf_config(path: str | pathlib.Path) -> HFConfig:
    """The family and text-model keys of the config.json in the model directory `path`."""
    directory = pathlib.Path(path)
    file = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (expected a Hugging Face model directory)")
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (not a Hugging Face model directory)")
    try:
        source = json.loads(file.read_text())
    except ValueError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    return parse_hf_config(source, str(file))


def hf_shardings(model_config: ModelConfig, mesh_config=None, devices=None) -> dict:
    """The params' shardings on the mesh of `mesh_config` (default: the base config's, every
    device on fsdp), with the axes the mesh does not divide replicated (one warning lists them)."""
    mesh_config = base_config().mesh if mesh_config is None else mesh_config
    mesh = parallel.make_mesh(mesh_config, devices)
    rules = parallel.rules_table(mesh_config.rules)
    abstract = abstract_params(model_config)
    return parallel.tree_shardings(abstract, logical_axes(model_config), rules, mesh, divisible_only=True)


def load_hf(path: str | pathlib.Path, dtype: str | None = None, mesh_config=None) -> tuple[ModelConfig, dict]:
    """(ModelConfig, params) of the Hugging Face model directory `path` (config.json and
    model.safetensors or the shards of model.safetensors.index.json), so that
    `t1jax.model.forward(model_config, params, tokens_BT)[0]` are its logits.

    dtype: the params' (and the computation's) dtype, default the checkpoint's. The params are
    placed on the mesh of `mesh_config` (default: every device on fsdp); each device reads only
    its block of each tensor, so the whole model is never in one host's memory at once.
    """
    hf = read_hf_config(path)
    model_config = model_config_from_hf(hf, dtype)
    return model_config, load_hf_params(path, hf, model_config, hf_shardings(model_config, mesh_config))


def load_hf_params(path: str | pathlib.Path, hf: HFConfig, model_config: ModelConfig, shardings: dict) -> dict:
    """The params of `model_config` from the safetensors of `path`, placed with `shardings`."""
    reader = SafetensorsReader(path)
    specs = _check_tensors(reader, hf, model_config)
    abstract = abstract_params(model_config)
    dtype = NP_DTYPES[model_config.param_dtype]
    params: dict = {}
    for spec in specs:
        target = get_path(abstract, spec.path)
        array = _load_leaf(reader, spec, target.shape, get_path(shardings, spec.path), dtype, model_config.dim_per_head)
        set_path(params, spec.path, array)
    if jax.tree.structure(params) != jax.tree.structure(abstract):  # a mapping bug, not a user error
        raise AssertionError("the HF name mapping does not cover the params tree")
    return params


def _check_tensors(reader: SafetensorsReader, hf: HFConfig, mc: ModelConfig) -> list[Tensor]:
    """The tensors to read; an error naming the file and key for a missing tensor, a shape that
    config.json does not imply, or a tensor of the text model that t1jax would not use."""
    prefix, head_key = next(((p, h) for p, h in PREFIXES if p + "embed_tokens.weight" in reader), (None, None))
    if prefix is None:
        raise CheckpointError(f"{reader.directory}: no embed_tokens.weight under {', '.join(p for p, _ in PREFIXES)}")
    specs = tensors(mc, hf.family, prefix, head_key)
    abstract = abstract_params(mc)
    for spec in specs:
        if spec.key not in reader:
            hint = " (config.json: tie_word_embeddings is false)" if spec.key == head_key else ""
            raise CheckpointError(f"{reader.directory}: no tensor {spec.key}{hint}")
        if reader.dtype(spec.key) not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{reader.file(spec.key)}: {spec.key} is {reader.dtype(spec.key)}, not a float tensor "
                f"({', '.join(FLOAT_DTYPES)}): quantized checkpoints are not supported"
            )
        expected, found = spec.hf_shape(get_path(abstract, spec.path).shape), reader.shape(spec.key)
        if found != expected:
            raise CheckpointError(
                f"{reader.file(spec.key)}: {spec.key} has shape {list(found)}, {hf.file} implies {list(expected)}"
            )
    used = {spec.key for spec in specs} | {head_key}  # a tied model's stored head is the embedding
    unused = [k for k in reader.keys() if k.startswith(prefix) and k not in used and "rotary_emb." not in k]
    if unused:
        raise CheckpointError(
            f"{reader.file(unused[0])}: tensor {unused[0]} (and {len(unused) - 1} more) is not part of the model "
            f"that {hf.file} describes"
        )
    return specs


def _load_leaf(reader: SafetensorsReader, spec: Tensor, shape, sharding, dtype, head_dim: int) -> jax.Array:
    """One parameter, each device's block read from the file; a block several devices hold
    (replicas) is read once and dropped once the last of them has it."""

    def bounds(index):
        return tuple(s.indices(n)[:2] for s, n in zip(index, shape))

    wanted = collections.Counter(bounds(i) for i in sharding.addressable_devices_indices_map(tuple(shape)).values())
    blocks: dict = {}

    def block(index):
        key = bounds(index)
        if key not in blocks:
            value = spec.read_block(lambda i: reader.read(spec.key, i), tuple(slice(*b) for b in key), head_dim)
            # safetensors hands back a fresh buffer (not the file's mapping): no copy unless converted
            blocks[key] = np.ascontiguousarray(value, dtype=dtype)
        wanted[key] -= 1
        return blocks[key] if wanted[key] > 0 else blocks.pop(key)

    return jax.make_array_from_callback(tuple(shape), sharding, block)


def save_hf(
    model_config: ModelConfig,
    params: dict,
    out_dir: str | pathlib.Path,
    source_config: dict | None = None,
    dtype: str = "bfloat16",
    max_shard_bytes: int = 5 * 2**30,
    token_ids: dict | None = None,
) -> dict:
    """Writes `params` as a Hugging Face model directory: sharded safetensors with their index
    and config.json (the imported `source_config` updated with what the model config
    determines; without one, a Llama config; `token_ids` such as {"eos_token_id": 3} are set in
    it). A tied head is written once, as the embedding.
    Returns {"family", "files", "total_size"}. One process: the params are gathered to the host
    one at a time."""
    if dtype not in NP_DTYPES:
        raise CheckpointError(f"dtype must be one of {', '.join(NP_DTYPES)}, got {dtype!r}")
    if jax.process_count() > 1:
        raise CheckpointError("export runs in a single process")
    out = pathlib.Path(out_dir)
    config = {**hf_config_for(model_config, source_config, dtype), **(token_ids or {})}
    out.mkdir(parents=True, exist_ok=True)
    np_dtype = NP_DTYPES[dtype]
    entries = []
    for spec in tensors(model_config, config["model_type"]):
        leaf = get_path(params, spec.path)
        entries.append((spec.key, spec.hf_shape(leaf.shape), np_dtype, _exporter(spec, leaf)))
    index = write_sharded(out, entries, max_shard_bytes)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    files = sorted(set(index["weight_map"].values()))
    return {"family": config["model_type"], "files": files, "total_size": index["metadata"]["total_size"]}


def _exporter(spec: Tensor, leaf):
    # the writer converts the (transposed) view to the file's dtype and layout in one copy
    return lambda: spec.to_hf(np.asarray(jax.device_get(leaf)))
