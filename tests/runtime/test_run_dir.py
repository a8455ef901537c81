"""load_run: a run directory read back as (model config, params, tokenizer), with the model the
run saved, onto any mesh, and clear errors for what is not a run."""

import dataclasses
import errno
import json
import os
import pathlib

import jax
import numpy as np
import pytest
from small_model import SMALL_MODEL

from t1jax import config as config_lib
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import CheckpointError
from t1jax.model import ModelConfig
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.layout import params_layout
from t1jax.runtime.run_dir import checkpoint_steps, load_run, save_run_config
from t1jax.train.state import layout_from_config

ONE_LAYER = {**SMALL_MODEL, "model.num_layers": 1}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run as SFT leaves it: its config, a tokenizer and two checkpoints of a train state."""
    workdir = tmp_path_factory.mktemp("run")
    config = config_lib.load(None, {**ONE_LAYER, "run.workdir": str(workdir)})
    save_run_config(workdir, config)
    texts = [f"{a} + {b} = {a + b}" for a in range(30) for b in range(30)]
    Tokenizer.train(texts, 300).save(str(workdir / "tokenizer.model"))
    layout = layout_from_config(config, 10)
    with Checkpointer(str(workdir / "checkpoints")) as checkpointer:
        for step, seed in ((1, 1), (2, 2)):
            checkpointer.save(step, layout.init(seed).replace(step=jax.numpy.asarray(step)))
        checkpointer.wait()
    return workdir, layout


def test_load_run_reads_the_saved_model_and_any_step(run_dir):
    workdir, layout = run_dir
    other = config_lib.load(None, {"mesh.data": 2, "mesh.fsdp": 4})  # another model and mesh: the run's wins
    model_config, params, tokenizer = load_run(workdir, config=other)
    assert model_config == layout.model_config and model_config != ModelConfig.from_config(other.model)
    assert tokenizer.encode("3 + 4 = 7") == Tokenizer.load(str(workdir / "tokenizer.model")).encode("3 + 4 = 7")
    expected = layout.init(2).params  # the latest checkpoint
    jax.tree.map(np.testing.assert_array_equal, params, expected)
    assert params["embed"].sharding.mesh.shape == {"data": 2, "fsdp": 4, "tensor": 1}
    _, first, _ = load_run(workdir, step=1)
    jax.tree.map(np.testing.assert_array_equal, first, layout.init(1).params)
    assert checkpoint_steps(workdir) == [1, 2]


def test_a_layout_for_another_model_is_refused_by_name(run_dir):
    workdir, layout = run_dir
    wider = dataclasses.replace(layout.model_config, d_model=64)
    target = params_layout(wider, config_lib.load().mesh)
    with pytest.raises(CheckpointError, match="model.d_model is 32 there, 64 here"):
        load_run(workdir, layout=target, key="rl.init_from")


def test_a_run_without_config_json_uses_the_callers_model(run_dir, tmp_path):
    workdir, layout = run_dir
    copy = tmp_path / "old"
    copy.mkdir()
    for name in ("checkpoints", "tokenizer.model"):
        (copy / name).symlink_to(workdir / name)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_run(copy)
    caller = config_lib.load(None, ONE_LAYER)
    model_config, params, _ = load_run(copy, config=caller)
    assert model_config == ModelConfig.from_config(caller.model)
    jax.tree.map(np.testing.assert_array_equal, params, layout.init(2).params)


def test_what_is_not_a_run_is_named(tmp_path, run_dir):
    with pytest.raises(CheckpointError, match=r"--run=.*empty is not a run directory \(no checkpoints/"):
        load_run(tmp_path / "empty", key="--run")
    workdir, _ = run_dir
    with pytest.raises(CheckpointError, match="no tokenizer at .*missing.model"):
        load_run(workdir, config=config_lib.load(None, {"sft.tokenizer_path": str(tmp_path / "missing.model")}))
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({"model": {"d_model": 8, "wings": 2}}))
    with pytest.raises(CheckpointError, match="does not describe a model"):
        load_run(broken)


def test_a_workdir_that_cannot_be_a_run_directory_is_one_line(tmp_path, monkeypatch):
    from t1jax.errors import ConfigError
    from t1jax.runtime.run_dir import make_workdir

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"run.workdir=.*file cannot be used as a run directory"):
        make_workdir(tmp_path / "file")  # a file in its place
    with pytest.raises(ConfigError, match=r"run.workdir=.*under cannot be used"):
        make_workdir(tmp_path / "file" / "under")  # under a file
    assert make_workdir(tmp_path / "new" / "run").is_dir() and not list((tmp_path / "new" / "run").iterdir())

    # A read-only disk, as the OS reports it (permission bits would not stop root): the probe write fails.
    def read_only_disk(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(pathlib.Path, "write_bytes", read_only_disk)
    with pytest.raises(ConfigError, match="mounted/run cannot be used as a run directory: Read-only file system"):
        make_workdir(tmp_path / "mounted" / "run")
