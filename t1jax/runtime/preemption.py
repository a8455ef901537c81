"""Stopping a run cleanly when it is told to: SIGTERM (a preempted TPU VM, a scheduler) or
SIGINT (Ctrl-C) lets the step in progress finish; the loop then saves that step, closes its
writers and raises errors.Stopped, so a rerun resumes without losing a step.

A second signal acts as it would without this (the default handlers are back after the first).
With several processes every host must stop at the same step: JAX's preemption sync point
(multihost_utils.reached_preemption_sync_point, fed by the TPU's preemption notice) decides.
"""

from __future__ import annotations

import signal
import threading

import jax

from t1jax.errors import Stopped

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal:
    """`with StopOnSignal() as stop: ... if stop.requested(step): save; raise stop.stopped(step)`."""

    def __init__(self):
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc_info):
        self._restore()

    def _handle(self, signal_number, frame) -> None:
        self.signal_number = signal_number
        self._restore()  # a second signal acts at once

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def requested(self, step: int) -> bool:
        """Whether to stop after `step` (the same answer on every host)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step)) or self.signal_number is not None
            except RuntimeError:  # no preemption service (not launched by a TPU runtime)
                pass
        return self.signal_number is not None

    def stopped(self, step: int) -> Stopped:
        name = signal.Signals(self.signal_number or signal.SIGTERM).name
        return Stopped(
            f"stopped by {name} after step {step}, which is saved; rerun the same command to resume",
            self.signal_number or signal.SIGTERM,
        )
