"""Tests for metric logging: CRC32C, TensorBoard event encoding, JSONL writer, progress bar."""

from __future__ import annotations

import glob
import io
import json
import os
import struct

import numpy as np
import pytest

from t1jax.train.metrics import MetricsWriter, read_metrics
from t1jax.train.progress import Progress
from t1jax.train.tensorboard import EventWriter, crc32c, masked_crc32c

# --------------------------------------------------------------------------- CRC32C


@pytest.mark.parametrize(
    "data, expected",
    [
        # Published check values: the CRC catalogue ("123456789") and RFC 3720 (iSCSI) appendix B.4.
        (b"123456789", 0xE3069283),
        (b"\x00" * 32, 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
        (b"", 0x00000000),
    ],
)
def test_crc32c_known_vectors(data, expected):
    assert crc32c(data) == expected


# --------------------------------------------------------------------------- event files


def _read_records(path: str) -> list[bytes]:
    """Independent TFRecord reader that checks both CRCs of every record."""
    with open(path, "rb") as f:
        raw = f.read()
    records, pos = [], 0
    while pos < len(raw):
        length_bytes = raw[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
        assert length_crc == masked_crc32c(length_bytes)
        data = raw[pos + 12 : pos + 12 + length]
        assert len(data) == length
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length : pos + 16 + length])
        assert data_crc == masked_crc32c(data)
        records.append(data)
        pos += 16 + length
    return records


def test_event_file_decodes_with_tensorboardx(tmp_path):
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    logdir = str(tmp_path / "tb")
    logged = [("loss", 2.5, 0), ("loss", 1.234567, 10), ("train/lr", np.float32(3e-4), 10), ("big", 1e6, 2**40)]
    with EventWriter(logdir) as writer:
        for tag, value, step in logged:
            writer.scalar(tag, value, step)

    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    events = [event_pb2.Event.FromString(r) for r in _read_records(path)]
    assert events[0].file_version == "brain.Event:2"
    assert events[0].wall_time > 1e9
    assert len(events) == 1 + len(logged)
    for event, (tag, value, step) in zip(events[1:], logged):
        assert event.step == step
        assert event.wall_time > 1e9
        (summary_value,) = event.summary.value
        assert summary_value.tag == tag
        assert summary_value.simple_value == np.float32(value)


def test_event_writer_appends_after_flush(tmp_path):
    pytest.importorskip("tensorboardX.proto.event_pb2")
    writer = EventWriter(str(tmp_path))
    writer.scalar("a", 1.0, 1)
    writer.flush()
    assert len(_read_records(writer.path)) == 2  # flushed data is on disk before close
    writer.scalar("a", 2.0, 2)
    writer.close()
    writer.close()  # idempotent
    assert len(_read_records(writer.path)) == 3


# --------------------------------------------------------------------------- MetricsWriter


def test_metrics_writer_roundtrip_and_resume(tmp_path):
    workdir = str(tmp_path / "run")
    with MetricsWriter(workdir) as writer:
        writer.write(1, {"loss": 2.0, "acc": np.float32(0.5)})
        writer.write(2, {"loss": np.float64(1.5)}, prefix="eval/")
    first = [{"step": 1, "loss": 2.0, "acc": 0.5}, {"step": 2, "eval/loss": 1.5}]
    assert read_metrics(os.path.join(workdir, "metrics.jsonl")) == first

    # A resumed run appends to the same file instead of truncating it.
    with MetricsWriter(workdir) as writer:
        writer.write(3, {"loss": 1.0})
    assert read_metrics(os.path.join(workdir, "metrics.jsonl")) == first + [{"step": 3, "loss": 1.0}]
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))


def test_metrics_writer_flushes_each_line(tmp_path):
    writer = MetricsWriter(str(tmp_path), tensorboard=False)
    writer.write(7, {"x": 1})
    with open(tmp_path / "metrics.jsonl") as f:  # readable before close
        assert json.loads(f.readline()) == {"step": 7, "x": 1.0}
    writer.close()
    assert not (tmp_path / "tensorboard").exists()


def test_read_metrics_ignores_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    assert read_metrics(str(path)) == [{"step": 1, "loss": 1.0}]


def test_non_primary_writer_creates_nothing(tmp_path):
    workdir = tmp_path / "run"
    with MetricsWriter(str(workdir), is_primary=False) as writer:
        writer.write(1, {"loss": 1.0})
    assert not workdir.exists()


# --------------------------------------------------------------------------- Progress


def test_progress_non_tty_prints_bounded_lines():
    stream = io.StringIO()
    progress = Progress(total=1000, description="train", stream=stream)
    for step in range(1, 1001):
        progress.update(step, loss=1.0 / step)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 12
    assert "1000/1000" in lines[-1]
    assert "loss=0.001" in lines[-1]
    assert "\r" not in stream.getvalue()


def test_progress_close_prints_final_step_when_stopped_early():
    stream = io.StringIO()
    with Progress(total=1000, description="train", stream=stream, start=500) as progress:
        for step in range(501, 538):
            progress.update(step)
    assert "537/1000" in stream.getvalue().splitlines()[-1]


def test_progress_disabled_prints_nothing():
    stream = io.StringIO()
    progress = Progress(total=10, description="train", enabled=False, stream=stream)
    for step in range(11):
        progress.update(step, loss=1.0)
    progress.close()
    assert stream.getvalue() == ""


def test_progress_tty_redraws_in_place():
    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    stream = FakeTTY()
    with Progress(total=100, description="train", stream=stream) as progress:
        for step in range(1, 101):
            progress.update(step, loss=0.25)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out.count("\r") <= 10  # throttled: first draw, final draw, close (+ slack for slow machines)
    assert "100/100" in out and "loss=0.25" in out
