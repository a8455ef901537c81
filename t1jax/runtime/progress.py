"""Console progress for training and evaluation loops, drawn by tqdm.

On an interactive terminal a tqdm bar redraws one line in place (at most ~10 times a
second, so printing never costs measurable step time). When output goes to a file or
CI log, carriage-return redraws would produce megabytes of noise, so it instead prints
a plain line (tqdm's formatting, no bar) roughly every 10% of progress plus one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Self, TextIO

from tqdm import tqdm

__all__ = ["Progress"]

_TTY_MIN_INTERVAL_S = 0.1  # at most ~10 redraws per second
_LOG_FRACTION = 0.1  # non-TTY: one line per ~10% of progress
_UNIT = "step"
# The plain (non-TTY) line: tqdm's fields without the bar, e.g.
# "sft  50% 500/1000 [00:10<00:10, 50.00step/s, loss=1.234]"
_PLAIN_FORMAT = "{desc} {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def _format_value(value) -> str:
    """Compact metric formatting: ints as-is, floats with 4 significant digits (``loss=1.234``)."""
    if isinstance(value, (bool, int)):
        return str(value)
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


class Progress:
    """Progress display for a loop running from ``start`` to ``total`` steps.

    ``update(step, **metrics)`` takes the absolute current step; metrics are shown after
    the bar. Rate and ETA are measured from ``start`` (tqdm's ``initial``), so a resumed
    run does not report an inflated speed.
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
        self._closed = False
        self._bar: tqdm | None = None
        isatty = getattr(stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        if enabled and self._tty:
            self._bar = tqdm(
                total=self.total,
                initial=self.start,
                desc=description,
                file=stream,
                unit=_UNIT,
                mininterval=_TTY_MIN_INTERVAL_S,
                leave=True,
                dynamic_ncols=True,
            )
        # Non-TTY: plain lines, throttled by progress rather than time.
        self._t0 = time.monotonic()
        self._last_printed_step: int | None = None
        self._log_every = max(1, int(self.total * _LOG_FRACTION))
        self._next_log_step = self.start + self._log_every

    def update(self, step: int, **metrics) -> None:
        self.step = int(step)
        if metrics:
            self.metrics = metrics
        if not self.enabled or self._closed:
            return
        if self._bar is not None:
            if metrics:
                self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(self.step - self._bar.n)  # tqdm redraws at most every mininterval
        elif self.step >= self.total or self.step >= self._next_log_step:
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
        if self._bar is not None:
            self._bar.close()  # final redraw and newline
        elif self._last_printed_step != self.step:
            self._print_line()
        self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _postfix(self) -> str:
        return ", ".join(f"{k}={_format_value(v)}" for k, v in self.metrics.items())

    def _print_line(self) -> None:
        self._last_printed_step = self.step
        line = tqdm.format_meter(
            n=self.step,
            total=self.total,
            elapsed=time.monotonic() - self._t0,
            prefix=self.description,
            unit=_UNIT,
            bar_format=_PLAIN_FORMAT,
            postfix=self._postfix(),
            initial=self.start,
        )
        self.stream.write(line + "\n")
        self.stream.flush()
