"""Grading many responses in worker processes with a hard per-item timeout.

Why processes and not threads or signal.alarm: an alarm only fires in the main thread (a grader
called from a trainer's helper thread would silently never time out), and a thread stuck in a
sympy C loop cannot be stopped. Each worker here handles one item at a time over its own pipe;
the parent waits on all pipes at once, and a worker still busy at its item's deadline is killed
(SIGKILL) and replaced, so the items after it are graded normally.

Workers are started with 'forkserver' (or 'spawn' where that does not exist), never 'fork': the
trainer runs JAX threads, and forking a multithreaded process can deadlock the child. The fork
server preloads the grading code, so replacing a killed worker costs milliseconds, not a sympy
import. A `Grader` keeps its workers between calls, so an RL step pays no pool start-up.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing as mp
import multiprocessing.connection
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

import numpy as np

from t1jax.errors import ConfigError, T1jaxError
from t1jax.rewards import _worker
from t1jax.rewards.grading import Verdict

_PRELOAD = ["__main__", "t1jax.rewards.grading"]


class GraderError(T1jaxError):
    """The grading pool was misused (closed, mismatched inputs) or its workers cannot start."""


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """One verdict per response, in input order, and the wall time the batch took."""

    verdicts: tuple[Verdict, ...]
    elapsed_s: float

    def __len__(self) -> int:
        return len(self.verdicts)

    @property
    def correct(self) -> np.ndarray:
        """Raw correctness as a bool array (what group filtering must use)."""
        return np.array([v is Verdict.CORRECT for v in self.verdicts], dtype=bool)

    @property
    def counts(self) -> dict[str, int]:
        """How many items got each verdict (every verdict listed, zeros included)."""
        tally = collections.Counter(self.verdicts)
        return {v.value: tally[v] for v in Verdict}


@dataclasses.dataclass
class _Slot:
    process: mp.Process
    conn: multiprocessing.connection.Connection


def _stop(slot: _Slot | None, kill: bool) -> None:
    if slot is None:
        return
    if not kill:
        try:
            slot.conn.send(None)
        except (OSError, ValueError):
            pass
        slot.process.join(timeout=2)
    if slot.process.is_alive():
        slot.process.kill()
        slot.process.join(timeout=5)
    slot.conn.close()


def _shutdown(slots: list) -> None:
    for k, slot in enumerate(slots):
        _stop(slot, kill=False)
        slots[k] = None


class Grader:
    """A reusable pool of grading workers; use as a context manager or call `close()`.

    `grade_fn(response, gold)` (default: math grading, `grade_verdict`) must be a module-level
    function, so the workers can import it; it returns a Verdict or a bool. The workers' memory
    is capped at `memory_limit_mb` (None: no cap). Thread-safe: calls from several threads are
    served one batch at a time.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float = 5.0,
        memory_limit_mb: int | None = 4096,
        start_method: str | None = None,
        grade_fn: Callable[[str, str], Verdict | bool] | None = None,
    ):
        workers = min(os.cpu_count() or 1, 8) if workers is None else workers
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"Grader: workers must be a positive int, got {workers!r}")
        if not timeout_s > 0:
            raise ConfigError(f"Grader: timeout_s must be positive, got {timeout_s!r}")
        methods = mp.get_all_start_methods()
        method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        if method not in ("forkserver", "spawn") or method not in methods:
            raise ConfigError(f"Grader: start_method must be 'forkserver' or 'spawn' (available here), got {method!r}")
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = memory_limit_mb
        self.grade_fn = grade_fn
        self.restarts = 0  # workers replaced after a timeout or a crash, over the Grader's life
        self._context = mp.get_context(method)
        if method == "forkserver":
            self._context.set_forkserver_preload(_PRELOAD)  # only takes effect if no server runs yet
        self._slots: list[_Slot | None] = [None] * workers
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._slots)

    @property
    def workers(self) -> int:
        return len(self._slots)

    def _start_worker(self) -> _Slot:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker.serve,
            args=(child_conn, self.memory_limit_mb, self.grade_fn),
            name="t1jax-grader",
            daemon=True,
        )
        process.start()
        child_conn.close()
        return _Slot(process, parent_conn)

    def _replace(self, k: int) -> None:
        _stop(self._slots[k], kill=True)
        self._slots[k] = self._start_worker()
        self.restarts += 1

    def start(self) -> Grader:
        """Start any worker not running yet (grade_batch does this itself)."""
        with self._lock:
            self._start_missing()
        return self

    def _start_missing(self) -> None:
        if self._closed:
            raise GraderError("this Grader is closed")
        for k, slot in enumerate(self._slots):
            if slot is None:
                self._slots[k] = self._start_worker()

    def grade_batch(self, responses: Sequence, golds: Sequence) -> BatchResult:
        """A verdict for each (response, gold) pair. A pair that is not two strings gets ERROR; an
        item still running after `timeout_s` gets TIMED_OUT and its worker is replaced."""
        responses, golds = list(responses), list(golds)
        if len(responses) != len(golds):
            raise GraderError(f"grade_batch: {len(responses)} responses but {len(golds)} golds")
        started = time.perf_counter()
        verdicts: list[Verdict | None] = [None] * len(responses)
        queue = collections.deque()
        for i, (response, gold) in enumerate(zip(responses, golds)):
            if isinstance(response, str) and isinstance(gold, str):
                queue.append(i)
            else:
                verdicts[i] = Verdict.ERROR
        with self._lock:
            self._start_missing()
            self._run(queue, responses, golds, verdicts)
        return BatchResult(tuple(verdicts), time.perf_counter() - started)

    def _run(self, queue: collections.deque, responses: list, golds: list, verdicts: list) -> None:
        busy: dict[int, tuple[int, float]] = {}  # worker slot -> (item, deadline)
        crashes = collections.Counter()  # item -> times its worker died under it
        while queue or busy:
            for k, slot in enumerate(self._slots):
                if k in busy or not queue:
                    continue
                i = queue.popleft()
                try:
                    slot.conn.send((i, responses[i], golds[i]))
                except (OSError, ValueError):  # the worker is gone: replace it and retry the item
                    self._crashed(k, i, queue, crashes, verdicts)
                    continue
                busy[k] = (i, time.monotonic() + self.timeout_s)
            if not busy:
                continue
            wait_s = max(0.0, min(deadline for _, deadline in busy.values()) - time.monotonic())
            handles = {}
            for k in busy:
                handles[self._slots[k].conn] = k
                handles[self._slots[k].process.sentinel] = k
            for k in {handles[h] for h in multiprocessing.connection.wait(list(handles), timeout=wait_s)}:
                i, _ = busy.pop(k)
                try:
                    if self._slots[k].conn.poll():
                        index, verdict = self._slots[k].conn.recv()
                        verdicts[index] = Verdict(verdict)
                        continue
                except (EOFError, OSError):
                    pass
                self._crashed(k, i, queue, crashes, verdicts)
            now = time.monotonic()
            for k, (i, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[k]
                    verdicts[i] = Verdict.TIMED_OUT
                    self._replace(k)

    def _crashed(self, k: int, i: int, queue, crashes, verdicts) -> None:
        """A worker died: replace it; its item is retried once (the death may have been a prior
        item's doing), then graded ERROR, so every batch ends even if workers keep dying."""
        self._replace(k)
        crashes[i] += 1
        if crashes[i] > 1:
            verdicts[i] = Verdict.ERROR
        else:
            queue.appendleft(i)

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Grader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def grade_batch(
    responses: Sequence, golds: Sequence, timeout_s: float = 5.0, workers: int | None = None
) -> BatchResult:
    """One-off batch grading with a fresh pool (an RL loop should keep a `Grader` instead)."""
    with Grader(workers=workers, timeout_s=timeout_s) as grader:
        return grader.grade_batch(responses, golds)
