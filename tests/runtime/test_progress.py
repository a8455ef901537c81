"""Progress: tqdm on a terminal, plain throttled lines elsewhere."""

from __future__ import annotations

import io
import re

from t1jax.runtime.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def _steps(line: str) -> int:
    (step,) = re.findall(r" (\d+)/1000 ", line)
    return int(step)


def test_progress_non_tty_prints_a_plain_line_every_tenth():
    stream = io.StringIO()
    progress = Progress(total=1000, description="train", stream=stream)
    for step in range(1, 1001):
        progress.update(step, loss=1.0 / step)
    progress.close()
    out = stream.getvalue()
    assert "\r" not in out and "\x1b" not in out  # no redraws, no terminal escapes
    lines = out.splitlines()
    assert [_steps(line) for line in lines] == [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    assert all(line.startswith("train ") for line in lines)
    assert " 50% 500/1000 " in lines[4]
    assert "loss=0.001" in lines[-1] and "loss=0.002]" in lines[4]  # 4 significant digits: 1/500
    assert "loss=0.001111" in lines[-2]  # 1/900 = 0.00111111...: 4 significant digits


def test_progress_large_jumps_print_one_line_each():
    stream = io.StringIO()
    with Progress(total=1000, description="eval", stream=stream) as progress:
        progress.update(350)
        progress.update(999)
    assert [_steps(line) for line in stream.getvalue().splitlines()] == [350, 999]


def test_progress_resumed_run_starts_at_start_and_closes_on_the_last_step():
    stream = io.StringIO()
    with Progress(total=1000, description="train", stream=stream, start=500) as progress:
        for step in range(501, 538):
            progress.update(step)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # less than 10% progress: only the line at close
    assert _steps(lines[0]) == 537 and " 54% " in lines[0]


def test_progress_resumed_rate_counts_only_the_steps_of_this_run(monkeypatch):
    # 10 steps done in 2 s after resuming at 500: 5 step/s (not 255 step/s), 490 left: 01:38.
    now = [100.0]
    monkeypatch.setattr("t1jax.runtime.progress.time.monotonic", lambda: now[0])
    stream = io.StringIO()
    progress = Progress(total=1000, description="train", stream=stream, start=500)
    now[0] = 102.0
    progress.update(510)
    progress.close()
    (line,) = stream.getvalue().splitlines()
    assert "510/1000" in line and "5.00step/s" in line and "<01:38" in line


def test_progress_disabled_prints_nothing():
    for stream in (io.StringIO(), FakeTTY()):
        progress = Progress(total=10, description="train", enabled=False, stream=stream)
        for step in range(11):
            progress.update(step, loss=1.0)
        progress.close()
        assert stream.getvalue() == ""


def test_progress_tty_redraws_in_place_a_bounded_number_of_times():
    stream = FakeTTY()
    with Progress(total=100, description="train", stream=stream) as progress:
        for step in range(1, 101):
            progress.update(step, loss=0.25, tokens=4096)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")  # one line, left in place at the end
    assert 2 <= out.count("\r") <= 10  # throttled: first draw, final draw (+ slack for slow machines)
    final = out.rsplit("\r", 1)[-1]
    assert "100/100" in final and "loss=0.25" in final and "tokens=4096" in final


def test_progress_tty_resumed_bar_starts_at_start():
    stream = FakeTTY()
    with Progress(total=1000, description="rl", stream=stream, start=500) as progress:
        progress.update(501, reward=0.123456)
    draws = [d for d in stream.getvalue().split("\r") if d]
    assert "500/1000" in draws[0]
    assert "501/1000" in draws[-1] and "reward=0.1235" in draws[-1]
