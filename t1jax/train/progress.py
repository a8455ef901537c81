"""Tiny dependency-free console progress bar for training loops.

On an interactive terminal it redraws a single line in place (throttled so printing
never costs measurable step time). When output goes to a file or CI log, carriage-
return redraws would produce megabytes of noise, so it instead prints a plain line
roughly every 10% of progress plus one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Self, TextIO

__all__ = ["Progress"]

_TTY_MIN_INTERVAL_S = 0.1  # at most ~10 redraws per second
_LOG_FRACTION = 0.1  # non-TTY: one line per ~10% of progress
_BAR_WIDTH = 24


def _format_value(value) -> str:
    """Compact metric formatting: ints as-is, floats with 4 significant digits (``loss=1.234``)."""
    if isinstance(value, (bool, int)):
        return str(value)
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def _format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Progress display for a loop running from ``start`` to ``total`` steps.

    ``update(step, **metrics)`` takes the absolute current step. Rate and ETA are
    measured from ``start``, so a resumed run does not report an inflated speed.
    """

    def __init__(
        self,
        total: int,
        description: str,
        enabled: bool = True,
        stream: TextIO = sys.stderr,
        start: int = 0,
    ):
        self.total = max(int(total), 1)
        self.description = description
        self.enabled = enabled
        self.stream = stream
        self.start = int(start)
        self.step = self.start
        self.metrics: dict = {}
        self._t0 = time.monotonic()
        isatty = getattr(stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._last_draw = float("-inf")
        self._last_printed_step: int | None = None
        self._log_every = max(1, int(self.total * _LOG_FRACTION))
        self._next_log_step = self.start + self._log_every
        self._closed = False

    def update(self, step: int, **metrics) -> None:
        self.step = int(step)
        if metrics:
            self.metrics = metrics
        if not self.enabled or self._closed:
            return
        done = self.step >= self.total
        if self._tty:
            now = time.monotonic()
            if done or now - self._last_draw >= _TTY_MIN_INTERVAL_S:
                self._last_draw = now
                self._draw()
        elif done or self.step >= self._next_log_step:
            # Skip ahead past the current step so a large jump prints only one line.
            while self._next_log_step <= self.step:
                self._next_log_step += self._log_every
            self._print_line()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._tty:
            self._draw()
            self.stream.write("\n")
        elif self._last_printed_step != self.step:
            self._print_line()
        self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ rendering

    def _status(self) -> str:
        elapsed = time.monotonic() - self._t0
        advanced = self.step - self.start
        rate = advanced / elapsed if elapsed > 0 and advanced > 0 else 0.0
        parts = [f"{self.step}/{self.total}"]
        if rate > 0:
            parts.append(f"{rate:.2f} step/s" if rate < 100 else f"{rate:.0f} step/s")
            parts.append(f"eta {_format_duration(max(self.total - self.step, 0) / rate)}")
        parts.extend(f"{k}={_format_value(v)}" for k, v in self.metrics.items())
        return " ".join(parts)

    def _draw(self) -> None:
        frac = min(max(self.step / self.total, 0.0), 1.0)
        filled = int(frac * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        # \x1b[K clears leftovers from a previous, longer line.
        self.stream.write(f"\r{self.description} [{bar}] {frac:4.0%} {self._status()}\x1b[K")
        self.stream.flush()

    def _print_line(self) -> None:
        self._last_printed_step = self.step
        frac = min(max(self.step / self.total, 0.0), 1.0)
        self.stream.write(f"{self.description} {frac:4.0%} {self._status()}\n")
        self.stream.flush()
