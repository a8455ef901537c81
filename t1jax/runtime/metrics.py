"""Metric logging: one JSON line per write in ``metrics.jsonl``, mirrored to TensorBoard and W&B.

JSONL is the source of truth (trivial to parse, append-only, survives resumes);
TensorBoard (event files written by tensorboardX) and Weights & Biases (optional,
``run.wandb_project``) are convenience views. In multi-host runs only the primary
process writes, so hosts do not clobber each other's files or runs.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, Self

from t1jax.errors import ConfigError

__all__ = ["METRICS_FILENAME", "TENSORBOARD_DIRNAME", "WANDB_RUN_ID_FILENAME", "MetricsWriter", "read_metrics"]

METRICS_FILENAME = "metrics.jsonl"
TENSORBOARD_DIRNAME = "tensorboard"
# The W&B run id of this workdir, so that a resumed training run continues the same W&B run.
WANDB_RUN_ID_FILENAME = "wandb_run_id"


class _TensorBoardScalars:
    """Scalars to ``<logdir>/events.out.tfevents.*`` through tensorboardX, written synchronously.

    tensorboardX's ``SummaryWriter`` hands events to a background thread, and its
    ``flush()`` does not wait for that thread: an event added just before a crash can
    be lost. Its event-file name also only has one-second resolution, so a writer
    reopened within the same second (a quick resume) would truncate the previous
    file. We therefore use the synchronous ``EventsWriter`` that ``SummaryWriter``
    uses underneath (same TFRecord framing, CRCs and protobufs), with a unique
    file-name suffix, and build each summary with tensorboardX's own ``scalar()``.
    """

    def __init__(self, logdir: str, purge_from: int | None = None):
        # Imported here: tensorboardX imports torch when it is installed (seconds), and
        # runs with tensorboard=False or on non-primary hosts should not pay for that.
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        self._event, self._scalar = Event, scalar
        os.makedirs(logdir, exist_ok=True)
        suffix = f".{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._writer = EventsWriter(os.path.join(logdir, "events"), filename_suffix=suffix)
        if purge_from is not None:
            # What tensorboardX's purge_step writes: TensorBoard drops the events of earlier
            # files at steps >= purge_from, the steps a resumed run is about to redo.
            from tensorboardX.proto.event_pb2 import SessionLog

            start = SessionLog(status=SessionLog.START)
            self._writer.write_event(Event(wall_time=time.time(), step=purge_from, session_log=start))
            self._writer.flush()

    def write(self, step: int, values: Mapping[str, float]) -> None:
        wall_time = time.time()
        for tag, value in values.items():
            self._writer.write_event(self._event(wall_time=wall_time, step=step, summary=self._scalar(tag, value)))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _init_wandb(workdir: str, project: str, run_name: str, config: Mapping[str, Any] | None):
    """Start (or resume, keyed by the run id kept in ``workdir``) a W&B run; returns the run."""
    try:
        import wandb
    except ImportError as e:
        raise ConfigError(
            f"run.wandb_project={project!r} needs Weights & Biases, which is not installed: "
            'pip install -e ".[wandb]" (or set run.wandb_project="" to turn it off)'
        ) from e
    id_path = os.path.join(workdir, WANDB_RUN_ID_FILENAME)
    if os.path.exists(id_path):
        with open(id_path, encoding="utf-8") as f:
            run_id = f.read().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        with open(id_path, "w", encoding="utf-8") as f:
            f.write(run_id + "\n")
    if config is not None and hasattr(config, "to_dict"):  # ml_collections.ConfigDict
        config = config.to_dict()
    try:
        return wandb.init(
            project=project,
            name=run_name or None,
            id=run_id,
            dir=workdir,
            config=dict(config) if config is not None else None,
            resume="allow",
        )
    except wandb.errors.UsageError as e:  # e.g. not logged in: the user's to fix, not a crash
        raise ConfigError(
            f"Weights & Biases (run.wandb_project={project!r}): {e} (or set WANDB_MODE=offline to log locally)"
        ) from e


class MetricsWriter:
    """Appends scalar metrics to ``<workdir>/metrics.jsonl``, ``<workdir>/tensorboard/`` and W&B.

    Files are opened in append mode so a resumed run continues the same log; a resumed
    run adds a new TensorBoard event file next to the old ones (TensorBoard reads them
    all) and continues the same W&B run. With ``resume_step`` (the step of the checkpoint
    a run resumed from) the records of later steps, which the run will redo, are dropped
    from the JSONL and purged from TensorBoard, so each step appears once. Everything is
    flushed on each ``write``: a crash never loses a line or an event that ``write`` returned
    from. Non-finite values are
    written as ``NaN``/``Infinity`` (Python's json extension), which :func:`read_metrics`
    reads back.

    ``wandb_project`` (config ``run.wandb_project``; "" = off) also logs every write to
    Weights & Biases (``pip install -e ".[wandb]"``), with ``config`` as the run's config.
    """

    def __init__(
        self,
        workdir: str,
        tensorboard: bool = True,
        is_primary: bool = True,
        wandb_project: str = "",
        wandb_run_name: str = "",
        config: Mapping[str, Any] | None = None,
        resume_step: int | None = None,
    ):
        self.is_primary = is_primary
        self.path = os.path.join(workdir, METRICS_FILENAME)
        self._file = None
        self._events: _TensorBoardScalars | None = None
        self._wandb_run = None
        if not is_primary:
            return
        os.makedirs(workdir, exist_ok=True)
        if wandb_project:  # first: a missing wandb fails before any file is opened
            self._wandb_run = _init_wandb(workdir, wandb_project, wandb_run_name, config)
        if resume_step is not None:
            _truncate_after(self.path, resume_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the writer
        if tensorboard:
            purge_from = None if resume_step is None else resume_step + 1
            self._events = _TensorBoardScalars(os.path.join(workdir, TENSORBOARD_DIRNAME), purge_from)

    def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        """Log ``metrics`` at ``step``; values may be Python, numpy or jax scalars."""
        if self._file is None:
            return
        step = int(step)
        values = {prefix + k: float(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()
        if self._events is not None:
            self._events.write(step, values)
        if self._wandb_run is not None:
            self._wandb_run.log(values, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _truncate_after(path: str, step: int) -> None:
    """Drops the records of steps after `step` from a metrics.jsonl (atomically): a run resumed
    from the checkpoint of `step` redoes them, and each step is then logged once."""
    if not os.path.exists(path):
        return
    kept = [json.dumps(r) for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
