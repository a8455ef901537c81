"""The loop a grading worker process runs: receive (index, response, gold), send (index, verdict).

It imports only the grading code (sympy), never JAX. Its memory can be capped (RLIMIT_AS) so a
response that slips past the size limits gets a MemoryError in the worker, not an OOM-killed
trainer host.
"""

from __future__ import annotations

import os
import signal


def _address_space_in_use() -> int:
    """Bytes of virtual memory this process already maps (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _cap_memory(limit_mb: int | None) -> None:
    """Allow `limit_mb` more MiB of address space than the worker maps after its imports (the
    libraries' own reservations vary by machine and must not eat the budget)."""
    if not limit_mb:
        return
    try:
        import resource

        limit = _address_space_in_use() + limit_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass  # not available on this platform: the timeout still bounds the worker


def serve(conn, memory_limit_mb: int | None, grade_fn=None) -> None:
    """Grade with `grade_fn(response, gold) -> Verdict | bool` (default: grade_verdict) until the
    parent sends None or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle, not ours
    from t1jax.rewards.grading import Verdict, grade_verdict

    grade_fn = grade_fn or grade_verdict
    _cap_memory(memory_limit_mb)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, response, gold = message
        try:
            verdict = grade_fn(response, gold)
            if isinstance(verdict, bool):
                verdict = Verdict.CORRECT if verdict else Verdict.WRONG
            verdict = Verdict(verdict).value
        except Exception:  # MemoryError, RecursionError, a bug: all are an "error" verdict
            verdict = Verdict.ERROR.value
        try:
            conn.send((index, verdict))
        except (EOFError, OSError):
            return
