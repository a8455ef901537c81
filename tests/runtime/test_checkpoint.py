"""Checkpoint round trips, restore onto other meshes, and resuming a crashed SFT run."""

import jax
import numpy as np
import pytest
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.errors import CheckpointError
from t1jax.model import ModelConfig
from t1jax.runtime import metrics as metrics_lib
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.run_dir import load_params
from t1jax.train import sft as sft_lib
from t1jax.train.optimizer import make_optimizer
from t1jax.train.state import layout_from_config, make_layout

ONE_LAYER = {**SMALL_MODEL, "model.num_layers": 1}


def _layout(mesh_shape, num_devices):
    data, fsdp, tensor = mesh_shape
    config = config_lib.load(None, {**ONE_LAYER, **mesh_overrides(data, fsdp, tensor)})
    mesh = parallel.make_mesh(config.mesh, jax.devices()[:num_devices])
    return make_layout(
        ModelConfig.from_config(config.model),
        make_optimizer(config.optim, 10),
        mesh,
        parallel.rules_table(config.mesh.rules),
    )


def test_restore_onto_other_meshes(tmp_path):
    saved_layout = _layout((2, 2, 2), 8)
    state = saved_layout.init(3)
    state = state.replace(step=state.step + 7)
    with Checkpointer(str(tmp_path)) as ckpt:
        ckpt.save(7, state, {"epoch": 2, "position": 5})
        ckpt.wait()
    expected = jax.tree.map(np.asarray, state)
    for mesh_shape, devices in [((1, 1, 1), 1), ((1, 8, 1), 8), ((2, 2, 2), 8)]:
        layout = _layout(mesh_shape, devices)
        with Checkpointer(str(tmp_path)) as ckpt:
            restored, data_state = ckpt.restore(layout.abstract_state())
        assert data_state == {"epoch": 2, "position": 5}
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored), expected)
        jax.tree.map(
            lambda x, s: x.sharding.is_equivalent_to(s, x.ndim) or pytest.fail(f"{x.sharding} != {s}"),
            restored,
            layout.shardings,
        )
    assert int(restored.step) == 7


def test_keeps_at_most_max_to_keep(tmp_path):
    state = {"w": np.arange(3.0)}
    with Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, state)
        ckpt.wait()
        assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3


def test_a_directory_that_is_not_a_checkpoint_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not empty but holds no t1jax checkpoint"):
        Checkpointer(str(tmp_path))
    file = tmp_path / "notes.txt"
    with pytest.raises(CheckpointError, match="is a file, not a directory"):
        Checkpointer(str(file))
    broken = tmp_path / "broken"
    (broken / "4").mkdir(parents=True)  # a step directory with nothing in it
    with pytest.raises(CheckpointError, match="could not restore step 4"):
        Checkpointer(str(broken)).restore({"w": jax.ShapeDtypeStruct((3,), np.float32)})


class _Crash(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("pack", [False, pytest.param(True, marks=pytest.mark.long)])
def test_resume_after_crash_gives_identical_state(tmp_path, tiny_config_path, monkeypatch, pack):
    def config(workdir):
        overrides = {"run.workdir": str(workdir), "run.tensorboard": False, "sft.pack": pack}
        return config_lib.load(tiny_config_path, overrides)

    uninterrupted = sft_lib.run_sft(config(tmp_path / "a"))
    assert uninterrupted["final_step"] == 6

    original_write = metrics_lib.MetricsWriter.write

    def crash_at_step_5(self, step, metrics, prefix=""):
        if step == 5:
            raise _Crash
        original_write(self, step, metrics, prefix)

    monkeypatch.setattr(metrics_lib.MetricsWriter, "write", crash_at_step_5)
    with pytest.raises(_Crash):
        sft_lib.run_sft(config(tmp_path / "b"))
    monkeypatch.setattr(metrics_lib.MetricsWriter, "write", original_write)
    resumed = sft_lib.run_sft(config(tmp_path / "b"))
    assert resumed["start_step"] == 4 and resumed["final_step"] == 6  # checkpoints every 2 steps

    def final_params(workdir):
        layout = layout_from_config(config(workdir), total_steps=6)
        with Checkpointer(str(workdir / "checkpoints")) as ckpt:
            return ckpt.restore(layout.abstract_state())

    (state_a, data_a), (state_b, data_b) = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    assert data_a == data_b
    jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
    losses_a = [r["loss"] for r in metrics_lib.read_metrics(str(tmp_path / "a" / "metrics.jsonl")) if "loss" in r]
    losses_b = [r["loss"] for r in metrics_lib.read_metrics(str(tmp_path / "b" / "metrics.jsonl")) if "loss" in r]
    assert losses_b == losses_a  # steps 1-4 before the crash, 5-6 after it
    assert losses_a[-1] < losses_a[0]


@pytest.mark.slow
def test_sft_init_from_starts_from_the_earlier_runs_weights_and_tokenizer(tmp_path, tiny_config_path):
    def config(workdir, **overrides):
        return config_lib.load(tiny_config_path, {"run.workdir": str(workdir), "run.tensorboard": False, **overrides})

    drills = sft_lib.run_sft(config(tmp_path / "drills", **{"sft.source": "drills"}))
    assert "validation drills" in drills["data"] and drills["final_step"] == 6
    layout = layout_from_config(config(tmp_path / "drills"), total_steps=6)
    trained = load_params(str(tmp_path / "drills"), layout)
    fresh = layout.init(0).params
    assert not np.allclose(trained["embed"], fresh["embed"], atol=1e-3)  # the drills moved the weights

    # With a learning rate of 1e-9 one step changes nothing visible: what is saved is what was loaded.
    follow = config(tmp_path / "traces", **{"sft.init_from": str(tmp_path / "drills"),
                                            "sft.num_steps": 1, "optim.learning_rate": 1e-9})  # fmt: skip
    summary = sft_lib.run_sft(follow)
    assert summary["start_step"] == 0 and "validation traces" in summary["data"]
    loaded = load_params(str(tmp_path / "traces"), layout)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), loaded, trained)
    tokenizer = (tmp_path / "traces" / "tokenizer.model").read_bytes()
    assert tokenizer == (tmp_path / "drills" / "tokenizer.model").read_bytes()


def test_init_from_a_directory_without_a_run_is_a_clear_error(tmp_path, tiny_config_path):
    overrides = {"run.workdir": str(tmp_path / "a"), "sft.init_from": str(tmp_path / "nowhere")}
    with pytest.raises(CheckpointError, match="sft.init_from=.*nowhere is not a run directory"):
        sft_lib.run_sft(config_lib.load(tiny_config_path, overrides))
    with pytest.raises(CheckpointError, match="rl.init_from=.*nowhere is not a run directory"):
        load_params(str(tmp_path / "nowhere"), None, key="rl.init_from")
