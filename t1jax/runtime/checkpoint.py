"""Orbax checkpoints: train state, data-iterator state and run metadata saved together.

Saves are asynchronous (training continues while the previous step is written). A restore
takes the target shardings from an abstract state, so a checkpoint written on one mesh is
read onto any other (e.g. saved on (2,2,2), restored on 1 device or on (1,8,1)).
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp

from t1jax.errors import CheckpointError


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
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state or {}))
        self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state, step: int | None = None):
        """Returns (state, data_state) of `step` (default: latest), or None if there is none.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with the target shardings.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        if step not in self.all_steps():
            raise CheckpointError(f"{self.directory} has no step {step} (steps: {self.all_steps()})")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as e:  # Orbax raises many types; the user needs to know which input is bad
            raise CheckpointError(
                f"could not restore step {step} from {self.directory}: "
                f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            ) from e
        return restored.state, dict(restored.data or {})

    def restore_params(self, abstract_params, step: int | None = None):
        """The policy's parameters alone at `step` (default: latest), from an SFT checkpoint (a train
        state) or an RL one ({"policy": train state, "anchor": params}), placed with the shardings
        of `abstract_params`. The optimizer state is not read, so it may have any form (another
        optimizer, frozen parameters). None if there is no checkpoint."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        if step not in self.all_steps():
            raise CheckpointError(f"{self.directory} has no step {step} (steps: {self.all_steps()})")
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
                errors.append(f"as {'.'.join(where)}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            for key in where:
                restored = restored[key]
            # a partial restore hands back the target's placeholders for what is not on disk
            if all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(restored)):
                return restored
            errors.append(f"as {'.'.join(where)}: not in the checkpoint")
        raise CheckpointError(
            f"could not restore the parameters of step {step} from {self.directory}; " + "; ".join(errors)
        )

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _has_foreign_entries(directory: pathlib.Path) -> bool:
    if not directory.is_dir():
        return False
    return any(not p.name.startswith(".") and not p.name.endswith(".orbax-checkpoint-tmp") for p in directory.iterdir())
