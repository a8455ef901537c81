"""A run directory, as SFT and RL write it and every reader of weights takes it:

    <run>/config.json        the resolved config of the run (its `model` section describes the weights)
    <run>/tokenizer.model    the run's tokenizer: a sentencepiece model, or instead
    <run>/tokenizer.json     a Hugging Face tokenizer (an imported model's), each with the files
                             beside it that the source model shipped (tokenizer_config.json with
                             the chat template, special_tokens_map.json, generation_config.json)
    <run>/checkpoints/<step> Orbax checkpoints (SFT: a train state; RL: {"policy", "anchor"})

`load_run` is the one way to read a run back: evaluation, sampling, the forced-checks probe,
the demo and RL's `rl.init_from` all go through it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import jax

from t1jax import model as model_lib
from t1jax.config import ModelConfig
from t1jax.config.model import EXECUTION_FIELDS
from t1jax.data.tokenizer import HF_TOKENIZER_FILE, Tokenizer
from t1jax.errors import CheckpointError, ConfigError
from t1jax.model import lora
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.layout import ParamsLayout, make_params_layout, params_layout
from t1jax.runtime.lora_run import merged_params

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.model"  # the tokenizer SFT trains, a sentencepiece model
TOKENIZER_FILES = (HF_TOKENIZER_FILE, TOKENIZER_FILE)  # what a run may hold, in the order they are looked for
CHECKPOINT_DIR = "checkpoints"


def make_workdir(workdir: str | pathlib.Path, key: str = "run.workdir") -> pathlib.Path:
    """The run directory, created if needed and checked writable, so that a path under a file, a
    file in its place or a read-only disk is one line naming `key` rather than a failure deep
    inside a checkpoint write."""
    path = pathlib.Path(workdir)
    probe = path / f".t1jax-write-check-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{key}={workdir} cannot be used as a run directory: {e.strerror or e}") from None
    return path


def save_run_config(workdir: str | pathlib.Path, config) -> None:
    """Writes the run's resolved config beside its checkpoints (primary process only), after
    checking that checkpoints already there (a resumed run) hold the model it describes."""
    check_resumable(workdir, config)
    if jax.process_index() != 0:
        return
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tmp.replace(path)


def check_resumable(workdir: str | pathlib.Path, config) -> None:
    """A ConfigError if `workdir` holds checkpoints of another model, or stored in another form
    (model.param_dtype, model.scan_layers), than `config` trains: resuming would fail to read them,
    and the config.json written over the old one would misdescribe them to every reader."""
    workdir = pathlib.Path(workdir)
    steps = workdir / CHECKPOINT_DIR
    if not (workdir / CONFIG_FILE).is_file() or not steps.is_dir():
        return
    if not any(p.name.isdigit() for p in steps.iterdir()):
        return
    saved, current = run_model_config(workdir), ModelConfig.from_config(config.model)
    differences = _differences(saved, current) if _shape_of(saved) != _shape_of(current) else ""
    if not differences:
        stored = {"param_dtype": (saved.param_dtype, current.param_dtype)}
        stored["scan_layers"] = ("true" if saved.scans_layers else "false", "true" if current.scans_layers else "false")
        differences = ", ".join(f"model.{k} is {a!r} there, {b!r} here" for k, (a, b) in stored.items() if a != b)
    if differences:
        raise ConfigError(
            f"run.workdir={workdir} holds checkpoints of another model or form ({differences}): resume with its "
            "values, or start a new run.workdir from its weights (sft.init_from / rl.init_from convert them)"
        )


def run_model_config(run_dir: str | pathlib.Path, fallback: ModelConfig | None = None) -> ModelConfig:
    """The model a run trained (its config.json), else `fallback` (a run that saved no config)."""
    path = pathlib.Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        if fallback is None:
            raise CheckpointError(f"{run_dir} has no {CONFIG_FILE}: the model's shape is unknown")
        return fallback
    try:
        saved = json.loads(path.read_text())["model"]
        saved.setdefault("scan_layers", "false")  # written before layers could be scanned
        return ModelConfig(**saved)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} does not describe a model: {type(e).__name__}: {e}") from None


def run_tokenizer(run_dir: str | pathlib.Path, tokenizer_path: str = "") -> Tokenizer:
    """`tokenizer_path` if given (sft.tokenizer_path: a .model file, a tokenizer.json, or a
    directory holding either), else the run's own tokenizer (tokenizer.json or tokenizer.model)."""
    if tokenizer_path:
        if not pathlib.Path(tokenizer_path).exists():
            raise CheckpointError(f"no tokenizer at {tokenizer_path}; set sft.tokenizer_path")
        return Tokenizer.load(tokenizer_path)
    if not has_tokenizer(run_dir):
        names = " or ".join(TOKENIZER_FILES)
        raise CheckpointError(f"no tokenizer in {run_dir} (no {names}); set sft.tokenizer_path")
    return Tokenizer.load(run_dir)


def has_tokenizer(run_dir: str | pathlib.Path) -> bool:
    """Whether the run directory holds a tokenizer (either kind)."""
    return any((pathlib.Path(run_dir) / name).is_file() for name in TOKENIZER_FILES)


def save_run_tokenizer(tokenizer: Tokenizer, run_dir: str | pathlib.Path) -> None:
    """Keeps `tokenizer` in the run directory with all the files it came with (primary process only)."""
    if jax.process_index() == 0:
        pathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir)


def run_layout(run_dir: str | pathlib.Path, config) -> ParamsLayout:
    """The layout of a run's model on the mesh of `config` (what a reader of several of the run's
    checkpoints, or of runs sharing its model, builds once)."""
    return params_layout(run_model_config(run_dir, ModelConfig.from_config(config.model)), config.mesh)


def checkpoint_steps(run_dir: str | pathlib.Path) -> list[int]:
    with Checkpointer(str(check_run_dir(run_dir, "run")), create=False) as checkpointer:
        return sorted(checkpointer.all_steps())


def load_params(run_dir: str | pathlib.Path, layout, step: int | None = None, key: str = "run"):
    """The policy's parameters of `run_dir` at `step` (default: the latest), placed with the
    shardings of `layout` (a ParamsLayout or a train StateLayout). The run's optimizer state is not
    read; a LoRA run's adapters come merged into its base. Errors name the config key or flag `key`
    that pointed at the run."""
    directory = check_run_dir(run_dir, key)
    saved = run_model_config(run_dir, layout.model_config)
    if lora.enabled(saved):
        return merged_params(run_dir, directory, saved, layout, step, key)
    wanted = layout.abstract_params()
    # read in the form and dtype the run saved (its checksums are of those bits), then convert: a
    # run may start from another's weights with another model.param_dtype or model.scan_layers
    scanned = saved.scans_layers
    if scanned == layout.model_config.scans_layers:
        saved_form = wanted
    else:
        form = dataclasses.replace(layout.model_config, scan_layers="true" if scanned else "false")
        saved_form = make_params_layout(form, layout.mesh, layout.rules, divisible_only=True).abstract_params()
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, saved.param_dtype, sharding=s.sharding), saved_form)
    with Checkpointer(str(directory), create=False) as checkpointer:
        params = checkpointer.restore_params(target, step)
    if params is None:
        raise CheckpointError(f"{key}={run_dir}: no checkpoint in {directory}")
    if saved_form is not wanted:
        change_form = model_lib.unstack_layers if scanned else model_lib.stack_layers
        shardings = jax.tree.map(lambda s: s.sharding, wanted)
        params = jax.jit(change_form, out_shardings=shardings)(params)
    return jax.tree.map(lambda x, s: x if x.dtype == s.dtype else x.astype(s.dtype), params, wanted)


def load_run(
    run_dir: str | pathlib.Path, step: int | None = None, *, config=None, layout=None, key: str = "run"
) -> tuple[ModelConfig, dict, Tokenizer]:
    """(model_config, params, tokenizer) of `run_dir` at `step` (default: the latest checkpoint).

    The model is the run's own (config.json; `config.model` for a run that saved none). The
    parameters are placed with `layout` if given (its model must be the run's), else on the mesh
    of `config.mesh` (default: all devices). `config.sft.tokenizer_path`, if set, replaces the
    run's tokenizer.
    """
    check_run_dir(run_dir, key)  # "not a run directory" before any other complaint
    fallback = ModelConfig.from_config(config.model) if config is not None else None
    model_config = run_model_config(run_dir, fallback if layout is None else layout.model_config)
    if layout is None:
        layout = params_layout(model_config, config.mesh if config is not None else None)
    elif _shape_of(lora.base_model(layout.model_config)) != _shape_of(lora.base_model(model_config)):
        raise CheckpointError(f"{key}={run_dir} holds another model: {_differences(model_config, layout.model_config)}")
    else:  # the run's weights in the layout's dtypes (load_params casts them)
        model_config = layout.model_config
    tokenizer = run_tokenizer(run_dir, config.sft.tokenizer_path if config is not None else "")
    return model_config, load_params(run_dir, layout, step, key), tokenizer


def _shape_of(model_config: ModelConfig) -> ModelConfig:
    """The model without what only changes how it runs: what must match to load a run's weights."""
    default = ModelConfig()
    return dataclasses.replace(model_config, **{name: getattr(default, name) for name in EXECUTION_FIELDS})


def check_run_dir(run_dir: str | pathlib.Path, key: str) -> pathlib.Path:
    """The run's checkpoint directory; an error naming `key` if `run_dir` is not a run."""
    directory = pathlib.Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        raise CheckpointError(f"{key}={run_dir} is not a run directory (no {CHECKPOINT_DIR}/ in it)")
    return directory


def _differences(saved: ModelConfig, expected: ModelConfig) -> str:
    a, b = dataclasses.asdict(saved), dataclasses.asdict(expected)
    return ", ".join(f"model.{k} is {a[k]!r} there, {b[k]!r} here" for k in a if a[k] != b[k])


def save_run(run_dir: str | pathlib.Path, config, params, files: dict | None = None, step: int = 0) -> None:
    """Writes a run directory for parameters that no training produced (an imported checkpoint):
    config.json (`config`, a resolved t1jax config whose `model` section describes `params`),
    `files` ({name in the run: source path}, e.g. the tokenizer files) copied in, and the params
    as checkpoint `step` ({"params": params}, what `load_run` reads)."""
    import shutil

    run_dir = pathlib.Path(run_dir)
    save_run_config(run_dir, config)
    if jax.process_index() == 0:
        for name, source in (files or {}).items():
            shutil.copyfile(source, run_dir / name)
    with Checkpointer(str(run_dir / CHECKPOINT_DIR), max_to_keep=1, async_save=False) as checkpointer:
        checkpointer.save(step, {"params": params}, force=True)
        checkpointer.wait()
