"""The non-finite guard both training loops run after every optimizer step.

The step's loss, gradient norm and update norm are reduced on device, so the check fetches three
scalars a step. A step that fails it is never saved: the run stops with the checkpoints on disk
all finite, and the newest of them is the last good state.
"""

from __future__ import annotations

import math

from t1jax.errors import TrainingError

CHECKED = ("loss", "grad_norm", "update_norm")


def check_finite(what: str, step: int, metrics: dict, last_saved: int | None, hint: str) -> None:
    """Raises TrainingError naming the first of CHECKED that is not finite in `metrics`."""
    values = {name: float(metrics[name]) for name in CHECKED}
    bad = [f"{name} {value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        kept = f"step {last_saved}" if last_saved is not None else "none saved yet"
        raise TrainingError(
            f"{what} step {step}: {', '.join(bad)}: not finite; stopping with the last checkpoint "
            f"({kept}) kept ({hint})"
        )
