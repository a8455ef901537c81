"""Damaged checkpoints are detected and fallen back from, never restored as if intact.

A checkpoint of three steps is written once; every trial copies it, damages one random file of
the newest step (flipped bytes, truncation or deletion; every other trial a file of array data),
and restores. The only acceptable
outcomes: the newest step's exact values (the damage touched nothing that is read, e.g. a
commit marker), or the previous step's exact values with a warning naming the newest step.
"""

import pathlib
import random
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t1jax.errors import CheckpointError
from t1jax.runtime.checkpoint import CHECKSUM_FILE, SET_ASIDE_PREFIX, Checkpointer

STEPS = (1, 2, 3)
DAMAGES = ("flip", "truncate", "delete")


def _state(step: int) -> dict:
    return {
        "params": {"w": jnp.arange(2000, dtype=jnp.float32).reshape(20, 100) * step, "b": jnp.full(7, step, jnp.int32)},
        "step": jnp.int32(step),
    }


def _abstract():
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), _state(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("saved") / "checkpoints"
    with Checkpointer(str(directory), max_to_keep=5) as checkpointer:
        for step in STEPS:
            checkpointer.save(step, _state(step), {"next_index": step * 10})
    return directory


def _copy(saved: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "checkpoints"
    shutil.copytree(saved, directory)
    return directory


def _damage(file: pathlib.Path, kind: str, rng: random.Random) -> None:
    data = bytearray(file.read_bytes())
    if kind == "delete" or not data:
        file.unlink()
    elif kind == "truncate":
        file.write_bytes(bytes(data[: rng.randrange(len(data))]))
    else:
        for _ in range(16):
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        file.write_bytes(bytes(data))


def _same(restored, step: int) -> bool:
    pairs = zip(jax.tree.leaves(jax.device_get(restored)), jax.tree.leaves(_state(step)))
    return all(np.array_equal(a, b) for a, b in pairs)


# seed 0 in the default run; the other draws with the long tests (`pytest -m long`)
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.long), pytest.param(2, marks=pytest.mark.long)])
@pytest.mark.parametrize("kind", DAMAGES)
def test_random_damage_to_the_newest_step_is_never_restored_silently(saved, tmp_path, capfd, seed, kind):
    rng = random.Random(f"{seed}-{kind}")
    restored_steps = []
    for trial in range(6):
        directory = _copy(saved, tmp_path / str(trial))
        files = sorted(p for p in (directory / "3").rglob("*") if p.is_file())
        if trial % 2:  # every other trial hits the array data (files under a d/ directory)
            files = [p for p in files if p.parent.name == "d"]
        _damage(rng.choice(files), kind, rng)
        with Checkpointer(str(directory), create=False) as checkpointer:
            state, data_state = checkpointer.restore(_abstract(), set_aside_unusable=True)
        step = int(state["step"])
        assert _same(state, step) and data_state == {"next_index": step * 10}
        warned = "step 3" in capfd.readouterr().err
        assert (step, warned) in [(3, False), (2, True)]
        restored_steps.append(step)
    # the table in docs/results/*-fault-injection.md counts these (pytest -rP shows them)
    newest, previous = restored_steps.count(3), restored_steps.count(2)
    print(f"{kind} seed {seed}: newest step restored exactly {newest}, fell back to the previous step {previous}")


def test_damaged_array_bytes_are_caught_by_the_checksums(saved, tmp_path, capfd):
    directory = _copy(saved, tmp_path)
    largest = max((p for p in (directory / "3" / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside the array data
    largest.write_bytes(bytes(data))
    with Checkpointer(str(directory), create=False) as checkpointer:
        state, _ = checkpointer.restore(_abstract())
    assert _same(state, 2)
    assert "step 3" in capfd.readouterr().err


def test_an_explicit_step_is_restored_exactly_or_refused(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    (directory / "3" / CHECKSUM_FILE).write_text('{"state": {}, "data": ""}')  # step 3 no longer verifies
    with Checkpointer(str(directory), create=False) as checkpointer:
        with pytest.raises(CheckpointError, match=r"step 3 .*does not match its checksum"):
            checkpointer.restore(_abstract(), step=3)
        assert _same(checkpointer.restore(_abstract(), step=2)[0], 2)


@pytest.mark.parametrize("damaged", [b'{\x88state": {}}', b'{"state": {'])
def test_unreadable_checksums_name_their_step(saved, tmp_path, capfd, damaged):
    """Checksums that are not UTF-8 or not JSON fail their step, and the warning names it."""
    directory = _copy(saved, tmp_path)
    (directory / "3" / CHECKSUM_FILE).write_bytes(damaged)
    with Checkpointer(str(directory), create=False) as checkpointer:
        assert _same(checkpointer.restore(_abstract())[0], 2)
    assert f"step 3 in {directory}: {CHECKSUM_FILE} is unreadable" in capfd.readouterr().err


def test_a_step_without_checksums_is_incomplete(saved, tmp_path, capfd):
    """A run killed after Orbax finished a step but before its checksums were written."""
    directory = _copy(saved, tmp_path)
    (directory / "3" / CHECKSUM_FILE).unlink()
    with Checkpointer(str(directory), create=False) as checkpointer:
        assert _same(checkpointer.restore(_abstract())[0], 2)
    assert f"step 3 in {directory} is incomplete (no {CHECKSUM_FILE})" in capfd.readouterr().err


def test_checkpoints_written_without_any_checksums_still_restore(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    for step in STEPS:
        (directory / str(step) / CHECKSUM_FILE).unlink()
    with Checkpointer(str(directory), create=False) as checkpointer:
        assert _same(checkpointer.restore(_abstract())[0], 3)


def test_unusable_steps_are_set_aside_and_can_be_saved_again(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    (directory / "3" / "data" / "metadata").unlink()
    with Checkpointer(str(directory), create=False) as checkpointer:
        assert _same(checkpointer.restore(_abstract(), set_aside_unusable=True)[0], 2)
        assert checkpointer.all_steps() == [1, 2]
        checkpointer.save(3, _state(30), {"next_index": 300})
    aside = [p.name for p in directory.iterdir() if p.name.startswith(SET_ASIDE_PREFIX)]
    assert len(aside) == 1 and aside[0].startswith(f"{SET_ASIDE_PREFIX}3-")  # kept, not deleted
    with Checkpointer(str(directory), create=False) as checkpointer:
        state, data_state = checkpointer.restore(_abstract())
    assert _same(state, 30) and data_state == {"next_index": 300}


def test_a_reader_does_not_move_anything(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    (directory / "3" / "data" / "metadata").unlink()
    with Checkpointer(str(directory), create=False) as checkpointer:
        checkpointer.restore(_abstract())
    assert (directory / "3").is_dir()


def test_when_every_step_is_damaged_the_error_says_so(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    for step in STEPS:
        (directory / str(step) / "data" / "metadata").unlink()
    with Checkpointer(str(directory), create=False) as checkpointer:
        with pytest.raises(CheckpointError, match=r"no usable step is left \(steps \[1, 2, 3\] failed\)"):
            checkpointer.restore(_abstract())


def test_parameters_alone_are_verified_too(saved, tmp_path, capfd):
    directory = _copy(saved, tmp_path)
    checksums = directory / "3" / CHECKSUM_FILE
    checksums.write_text(checksums.read_text().replace('"params/w": [', '"params/w": [1, '))
    abstract = _abstract()["params"]
    with Checkpointer(str(directory), create=False) as checkpointer:
        params = checkpointer.restore_params(abstract)
    assert np.array_equal(params["w"], _state(2)["params"]["w"])
    assert "params/w does not match its checksum" in capfd.readouterr().err
