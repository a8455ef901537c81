"""Orbax checkpoints: train state, data-iterator state and run metadata saved together.

Saves are asynchronous (training continues while the previous step is written). A restore
takes the target shardings from an abstract state, so a checkpoint written on one mesh is
read onto any other (e.g. saved on (2,2,2), restored on 1 device or on (1,8,1)).

Every step is verified. Its checksums (runtime/checksums.py) are taken from the state being
saved and written to <step>/CHECKSUM_FILE once Orbax has finished the step, so a step with the
file is complete. A restore recomputes them from what it read. A step that fails to restore or
to match, or that lacks the file (the run died before it was written), is reported in one line
and the previous step is tried; a training run moves such steps aside (hidden, renamed, never
deleted) so it can save them again.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
import time

import jax
import orbax.checkpoint as ocp

from t1jax.errors import CheckpointError
from t1jax.runtime.checksums import array_checksums, json_checksum

CHECKSUM_FILE = "t1jax_checksums.json"
SET_ASIDE_PREFIX = ".unusable-step-"


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True, create: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint path {self.directory} is a file, not a directory")
        if not create and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {self.directory} does not exist")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=create
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))
        self._pending: dict[int, dict] = {}  # checksums of saves Orbax has not finished yet
        self._failed = False  # a write failed: closing must not wait for it again
        if self.latest_step() is None and _has_foreign_entries(self.directory):
            raise CheckpointError(
                f"{self.directory} is not empty but holds no t1jax checkpoint "
                "(expected numbered step directories); choose another directory"
            )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, data_state: dict | None = None, force: bool = False) -> None:
        """Starts saving `state` (any pytree of arrays) and the JSON-able iterator state."""
        data_state = data_state or {}
        checksums = {"state": array_checksums(state), "data": json_checksum(data_state)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
        self.wait()  # the previous step is complete, with its checksums, before this one starts
        with self._writing(step):
            self._manager.save(step, args=args, force=force)
        self._pending[step] = checksums

    def restore(self, abstract_state, step: int | None = None, set_aside_unusable: bool = False):
        """Returns (state, data_state) of `step`, or None if there is no checkpoint.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with the target shardings. Without
        `step`, the newest step that restores and verifies; with it, exactly that step or a
        CheckpointError. `set_aside_unusable` (a run about to train on) moves steps newer than
        the one restored that failed out of the way, so their step numbers can be saved again.
        """
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())

        def read(candidate):
            restored = self._restore_step(candidate, args)
            data_state = dict(restored.data or {})
            self._verify(candidate, "state", restored.state, data_state)
            return restored.state, data_state

        return self._newest_usable(read, step, set_aside_unusable)

    def restore_params(self, abstract_params, step: int | None = None):
        """The policy's parameters alone at `step` (default: the newest usable step, as restore),
        from an SFT checkpoint (a train state) or an RL one ({"policy": train state, "anchor":
        params}), placed with the shardings of `abstract_params`. The optimizer state is not
        read, so it may have any form (another optimizer, frozen parameters). None if there is
        no checkpoint."""
        return self._newest_usable(lambda candidate: self._read_params(abstract_params, candidate), step, False)

    def _read_params(self, abstract_params, step: int):
        errors = []
        for where in (("policy", "params"), ("params",)):  # RL, then SFT
            target = abstract_params
            for key in reversed(where):
                target = {key: target}
            restore = ocp.args.PyTreeRestore(
                target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
            )
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(state=restore)).state
            except Exception as e:  # Orbax raises many types
                errors.append(f"as {'.'.join(where)}: {_first_line(e, 200)}")
                continue
            # a partial restore hands back the target's placeholders for what is not on disk
            if not all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(restored)):
                errors.append(f"as {'.'.join(where)}: not in the checkpoint")
                continue
            self._verify(step, "state", restored, None)
            for key in where:
                restored = restored[key]
            return restored
        raise CheckpointError(
            f"could not restore the parameters of step {step} from {self.directory}; " + "; ".join(errors)
        )

    def _newest_usable(self, read, step: int | None, set_aside_unusable: bool):
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"{self.directory} has no step {step} (steps: {sorted(steps)})")
            return read(step)
        # a step directory Orbax does not list (its metadata is damaged) is a failed step too
        unlisted = {int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir()} - set(steps)
        unusable, candidates = [], sorted({*steps, *unlisted}, reverse=True)
        for i, candidate in enumerate(candidates):
            try:
                if candidate in unlisted:
                    raise CheckpointError(f"step {candidate} in {self.directory} is not a readable checkpoint")
                restored = read(candidate)
            except CheckpointError as e:
                if i + 1 == len(candidates):  # nothing older to fall back to
                    if unusable:
                        raise CheckpointError(f"{e}; no usable step is left (steps {candidates[::-1]} failed)") from e
                    raise
                unusable.append(candidate)
                print(
                    f"t1jax: warning: {e}; using step {candidates[i + 1]} if it verifies", file=sys.stderr, flush=True
                )
                continue
            if unusable and set_aside_unusable:
                self._set_aside(unusable)
            return restored
        return None

    def _restore_step(self, step: int, args):
        try:
            return self._manager.restore(step, args=args)
        except Exception as e:  # Orbax raises many types; the user needs to know which input is bad
            raise CheckpointError(f"could not restore step {step} from {self.directory}: {_first_line(e, 300)}") from e

    def _verify(self, step: int, item: str, restored, data_state: dict | None) -> None:
        """Compares what was read with the step's checksums; a leaf of `restored` missing from
        them, or a different value, is a CheckpointError naming the step and the leaf."""
        step_dir = self.directory / str(step)
        path = step_dir / CHECKSUM_FILE
        if not path.is_file():
            if not any((self.directory / str(s) / CHECKSUM_FILE).is_file() for s in self.all_steps()):
                return  # a run saved without checksums (none of its steps has them): nothing to verify against
            raise CheckpointError(f"step {step} in {self.directory} is incomplete (no {CHECKSUM_FILE})")
        try:
            expected = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            reason = _first_line(e, 200)
            raise CheckpointError(f"step {step} in {self.directory}: {CHECKSUM_FILE} is unreadable: {reason}") from None
        saved = expected.get(item, {})
        for name, sums in array_checksums(restored).items():
            if saved.get(name) != sums:
                raise CheckpointError(f"step {step} in {self.directory}: {item}/{name} does not match its checksum")
        if data_state is not None and expected.get("data") != json_checksum(data_state):
            raise CheckpointError(f"step {step} in {self.directory}: the iterator state does not match its checksum")

    def _write_checksums(self) -> None:
        """Writes the checksums of the finished saves (primary process only)."""
        for step in list(self._pending):
            checksums = self._pending.pop(step)
            step_dir = self.directory / str(step)
            if jax.process_index() != 0 or not step_dir.is_dir():  # rotated away already
                continue
            tmp = step_dir / (CHECKSUM_FILE + ".tmp")
            tmp.write_text(json.dumps(checksums))
            tmp.replace(step_dir / CHECKSUM_FILE)

    def _set_aside(self, steps: list[int]) -> None:
        if jax.process_index() == 0:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for step in steps:
                (self.directory / str(step)).rename(self.directory / f"{SET_ASIDE_PREFIX}{step}-{stamp}")
            print(
                f"t1jax: warning: moved unusable steps {sorted(steps)} aside in {self.directory} "
                f"(as {SET_ASIDE_PREFIX}<step>-{stamp})",
                file=sys.stderr,
            )
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk, with their checksums."""
        with self._writing(max(self._pending, default=None)):
            self._manager.wait_until_finished()
            self._write_checksums()

    def close(self) -> None:
        try:
            if not self._failed:
                self.wait()
        finally:
            try:
                self._manager.close()
            except Exception:  # noqa: BLE001 - after a failed write, closing may fail the same way again
                if not self._failed:
                    raise

    @contextlib.contextmanager
    def _writing(self, step: int | None):
        """Turns a failed write (a full disk, a lost mount) into one CheckpointError naming the
        directory and the step; steps saved before it are untouched."""
        try:
            yield
        except Exception as e:  # Orbax raises many types, from its own threads too
            self._failed = True
            reason = _first_line(e, 300)
            if "RESOURCE_EXHAUSTED" in reason or "No space left" in reason or getattr(e, "errno", None) == 28:
                reason = "no space left on the device"
            steps = self.all_steps()
            raise CheckpointError(
                f"could not save step {step} to {self.directory}: {reason}; "
                f"the steps saved before it are intact ({steps[-1] if steps else 'none yet'} is the newest)"
            ) from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _first_line(error: Exception, limit: int) -> str:
    """The gist of an Orbax or TensorStore error: its first line, without the spec dump."""
    line = (str(error).splitlines() or [""])[0].split(" See full TensorStore details")[0]
    return f"{type(error).__name__}: {line[:limit]}"


def _has_foreign_entries(directory: pathlib.Path) -> bool:
    if not directory.is_dir():
        return False
    return any(not p.name.startswith(".") and not p.name.endswith(".orbax-checkpoint-tmp") for p in directory.iterdir())
