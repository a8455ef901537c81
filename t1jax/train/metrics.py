"""Metric logging: one JSON line per write in ``metrics.jsonl``, mirrored to TensorBoard.

JSONL is the source of truth (trivial to parse, append-only, survives resumes);
TensorBoard is a convenience view. In multi-host runs only the primary process
writes, so hosts do not clobber each other's files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Self

from t1jax.train.tensorboard import EventWriter

__all__ = ["MetricsWriter", "read_metrics"]

METRICS_FILENAME = "metrics.jsonl"
TENSORBOARD_DIRNAME = "tensorboard"


class MetricsWriter:
    """Appends scalar metrics to ``<workdir>/metrics.jsonl`` and ``<workdir>/tensorboard/``.

    Files are opened in append mode so a resumed run continues the same log. Each
    line is flushed immediately: a crash never loses a line that ``write`` returned from.
    Non-finite values are written as ``NaN``/``Infinity`` (Python's json extension),
    which :func:`read_metrics` reads back.
    """

    def __init__(self, workdir: str, tensorboard: bool = True, is_primary: bool = True):
        self.is_primary = is_primary
        self.path = os.path.join(workdir, METRICS_FILENAME)
        self._file = None
        self._events: EventWriter | None = None
        if not is_primary:
            return
        os.makedirs(workdir, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the writer
        if tensorboard:
            self._events = EventWriter(os.path.join(workdir, TENSORBOARD_DIRNAME))

    def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        """Log ``metrics`` at ``step``; values may be Python, numpy or jax scalars."""
        if self._file is None:
            return
        step = int(step)
        values = {prefix + k: float(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()
        if self._events is not None:
            for tag, value in values.items():
                self._events.scalar(tag, value, step)
            self._events.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._events is not None:
            self._events.close()
            self._events = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_metrics(path: str) -> list[dict]:
    """Read a ``metrics.jsonl`` back as a list of dicts, in file order.

    Blank lines are skipped, and so is a truncated final line (a crash mid-write);
    corruption anywhere else raises.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # unterminated last line: partial write
                break
            raise
    return records
