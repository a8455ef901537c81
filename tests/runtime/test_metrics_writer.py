"""MetricsWriter: JSONL (the source of truth), TensorBoard event files and Weights & Biases.

The TensorBoard files are decoded here independently of the writer: a TFRecord reader
that checks both CRC-32C of every record (bitwise CRC, checked against the published
check value) and tensorboardX's copy of the TensorFlow ``Event`` protobuf. Expected
values are what was written, rounded to float32 by numpy (``simple_value`` is a float).
"""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest

from t1jax.errors import ConfigError
from t1jax.runtime.metrics import METRICS_FILENAME, TENSORBOARD_DIRNAME, MetricsWriter, read_metrics

# --------------------------------------------------------------------------- an independent event-file reader


def _crc32c(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): slow, obviously right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked_crc32c(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_records(path: str) -> list[bytes]:
    """TFRecord framing: u64 length, u32 masked crc(length), data, u32 masked crc(data)."""
    assert _crc32c(b"123456789") == 0xE3069283  # the reader's own CRC: the published check value
    with open(path, "rb") as f:
        raw = f.read()
    records, pos = [], 0
    while pos < len(raw):
        length_bytes = raw[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
        assert length_crc == _masked_crc32c(length_bytes)
        data = raw[pos + 12 : pos + 12 + length]
        assert len(data) == length
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length : pos + 16 + length])
        assert data_crc == _masked_crc32c(data)
        records.append(data)
        pos += 16 + length
    return records


def _read_events(path: str):
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    events = [event_pb2.Event.FromString(record) for record in _read_records(path)]
    assert events[0].file_version == "brain.Event:2"  # every event file starts with its version
    return events[1:]


def _scalars(events) -> list[tuple[str, int, float]]:
    out = []
    for event in events:
        assert event.wall_time > 1e9
        for value in event.summary.value:
            out.append((value.tag, event.step, value.simple_value))
    return out


def _f32(value: float) -> float:
    """``value`` rounded to float32, as a Python float (compared in float64, unlike np.float32)."""
    return float(np.float32(value))


def _event_files(workdir) -> list[str]:
    return sorted(glob.glob(os.path.join(str(workdir), TENSORBOARD_DIRNAME, "events.out.tfevents.*")))


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_events_decode_to_the_written_scalars(tmp_path):
    workdir = tmp_path / "run"
    with MetricsWriter(str(workdir)) as writer:
        writer.write(0, {"loss": 2.5})
        writer.write(10, {"loss": 1.234567, "lr": np.float32(3e-4)}, prefix="train/")
        writer.write(2**40, {"big": 1e6, "tiny": np.float64(1e-30)})
    (path,) = _event_files(workdir)
    assert _scalars(_read_events(path)) == [
        ("loss", 0, 2.5),
        ("train/loss", 10, _f32(1.234567)),  # simple_value is a float32
        ("train/lr", 10, _f32(3e-4)),
        ("big", 2**40, 1e6),
        ("tiny", 2**40, _f32(1e-30)),
    ]
    assert _f32(1.234567) != 1.234567  # the float32 rounding above is real


def test_tensorboard_events_are_on_disk_after_each_write(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    writer.write(1, {"a": 1.0})
    (path,) = _event_files(tmp_path)
    assert _scalars(_read_events(path)) == [("a", 1, 1.0)]  # before close: a crash would keep it
    writer.write(2, {"a": 2.0, "b": -3.0})
    assert _scalars(_read_events(path)) == [("a", 1, 1.0), ("a", 2, 2.0), ("b", 2, -3.0)]
    writer.close()
    writer.close()  # idempotent
    assert _scalars(_read_events(path)) == [("a", 1, 1.0), ("a", 2, 2.0), ("b", 2, -3.0)]


def test_resumed_writer_keeps_the_first_event_file(tmp_path):
    # The second writer opens within the same second as the first (the event-file name's
    # time resolution): it must add a file next to the first, not overwrite it.
    with MetricsWriter(str(tmp_path)) as writer:
        writer.write(1, {"loss": 2.0}, prefix="sft/")
        writer.write(2, {"loss": 1.5}, prefix="sft/")
    with MetricsWriter(str(tmp_path)) as writer:
        writer.write(3, {"loss": 1.0}, prefix="sft/")
    paths = _event_files(tmp_path)
    assert len(paths) == 2
    scalars = sorted(s for path in paths for s in _scalars(_read_events(path)))
    assert scalars == [("sft/loss", 1, 2.0), ("sft/loss", 2, 1.5), ("sft/loss", 3, 1.0)]


def test_a_resumed_run_logs_each_step_once(tmp_path):
    """Resumed from the checkpoint of step 3 after logging 5 steps: the JSONL keeps steps 1-3 and
    gets the redone 4 and 5 once; the new event file starts with TensorBoard's purge marker (a
    SessionLog START at step 4, what tensorboardX's purge_step writes), so TensorBoard drops
    the old file's steps 4 and 5."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    with MetricsWriter(str(tmp_path)) as writer:
        for step in range(1, 6):
            writer.write(step, {"loss": float(step)})
    with MetricsWriter(str(tmp_path), resume_step=3) as writer:
        for step in (4, 5):
            writer.write(step, {"loss": 10.0 + step})
    records = read_metrics(str(tmp_path / "metrics.jsonl"))
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0)]
    events = {path: _read_events(path) for path in _event_files(tmp_path)}
    (second,) = [path for path, found in events.items() if found[0].HasField("session_log")]
    (first,) = [path for path in events if path != second]
    marker, *scalars = events[second]
    assert marker.step == 4 and marker.session_log.status == event_pb2.SessionLog.START
    assert _scalars(scalars) == [("loss", 4, 14.0), ("loss", 5, 15.0)]
    assert [s[1] for s in _scalars(events[first])] == [1, 2, 3, 4, 5]  # purged by TensorBoard, not here


def test_importing_the_writer_does_not_import_tensorboardx():
    # tensorboardX imports torch when it is installed: only a writer with tensorboard=True pays.
    code = "import sys, t1jax.runtime.metrics; print('tensorboardX' in sys.modules, 'wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --------------------------------------------------------------------------- JSONL


def test_metrics_writer_roundtrip_and_resume(tmp_path):
    workdir = str(tmp_path / "run")
    with MetricsWriter(workdir) as writer:
        writer.write(1, {"loss": 2.0, "acc": np.float32(0.5)})
        writer.write(2, {"loss": np.float64(1.5)}, prefix="eval/")
    first = [{"step": 1, "loss": 2.0, "acc": 0.5}, {"step": 2, "eval/loss": 1.5}]
    assert read_metrics(os.path.join(workdir, METRICS_FILENAME)) == first

    # A resumed run appends to the same file instead of truncating it.
    with MetricsWriter(workdir) as writer:
        writer.write(3, {"loss": 1.0})
    assert read_metrics(os.path.join(workdir, METRICS_FILENAME)) == first + [{"step": 3, "loss": 1.0}]
    assert _event_files(workdir)


def test_metrics_writer_flushes_each_line(tmp_path):
    writer = MetricsWriter(str(tmp_path), tensorboard=False)
    writer.write(7, {"x": 1})
    with open(tmp_path / METRICS_FILENAME) as f:  # readable before close
        assert json.loads(f.readline()) == {"step": 7, "x": 1.0}
    writer.close()
    assert not (tmp_path / TENSORBOARD_DIRNAME).exists()


def test_non_finite_values_roundtrip(tmp_path):
    with MetricsWriter(str(tmp_path), tensorboard=False) as writer:
        writer.write(1, {"loss": float("nan"), "grad": float("inf")})
    (record,) = read_metrics(str(tmp_path / METRICS_FILENAME))
    assert np.isnan(record["loss"]) and record["grad"] == float("inf")


def test_read_metrics_ignores_truncated_last_line(tmp_path):
    path = tmp_path / METRICS_FILENAME
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    assert read_metrics(str(path)) == [{"step": 1, "loss": 1.0}]


def test_read_metrics_raises_on_corruption_before_the_last_line(tmp_path):
    path = tmp_path / METRICS_FILENAME
    path.write_text('{"step": 1, "lo\n{"step": 2, "loss": 1.0}\n')
    with pytest.raises(json.JSONDecodeError):
        read_metrics(str(path))


def test_non_primary_writer_creates_nothing(tmp_path):
    workdir = tmp_path / "run"
    with MetricsWriter(str(workdir), is_primary=False, wandb_project="ignored-off-primary") as writer:
        writer.write(1, {"loss": 1.0})
    assert not workdir.exists()


# --------------------------------------------------------------------------- Weights & Biases


def test_wandb_missing_is_a_config_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[wandb\]"'):
        MetricsWriter(str(tmp_path), wandb_project="t1jax")
    assert not (tmp_path / METRICS_FILENAME).exists()  # failed before opening anything


class _FakeWandb(types.ModuleType):
    """Stands in for the ``wandb`` module: records what MetricsWriter asks of it."""

    def __init__(self, init_error: Exception | None = None):
        super().__init__("wandb")
        self.errors = types.SimpleNamespace(UsageError=type("UsageError", (Exception,), {}))
        self.init_error, self.inits, self.logged, self.finished = init_error, [], [], 0

    def init(self, **kwargs):
        if self.init_error is not None:
            raise self.errors.UsageError(self.init_error)
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, values, step):
                fake.logged.append((step, values))

            def finish(self):
                fake.finished += 1

        return Run()


def test_wandb_gets_every_write_and_a_resumed_run_keeps_its_id(tmp_path, monkeypatch):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    workdir = str(tmp_path / "run")
    config = ml_collections.ConfigDict({"a": 1, "optim": {"lr": 0.1}})  # the run's config, as t1jax has it
    with MetricsWriter(workdir, tensorboard=False, wandb_project="proj", wandb_run_name="sft", config=config) as w:
        w.write(1, {"loss": np.float32(0.5)})
        w.write(1, {"loss": 0.75}, prefix="val_")
    assert fake.finished == 1
    with MetricsWriter(workdir, tensorboard=False, wandb_project="proj") as w:
        w.write(2, {"loss": 0.25})
    assert fake.logged == [(1, {"loss": 0.5}), (1, {"val_loss": 0.75}), (2, {"loss": 0.25})]
    first, second = fake.inits
    assert first["project"] == "proj" and first["name"] == "sft" and first["config"] == {"a": 1, "optim": {"lr": 0.1}}
    assert type(first["config"]) is dict
    assert first["dir"] == workdir and first["resume"] == "allow"
    assert second["id"] == first["id"] and second["name"] is None and second["config"] is None
    with MetricsWriter(workdir, is_primary=False, wandb_project="proj") as w:  # other hosts: no run
        w.write(3, {"loss": 0.1})
    assert len(fake.inits) == 2 and len(fake.logged) == 3


def test_wandb_usage_error_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", _FakeWandb(init_error=RuntimeError("No API key configured.")))
    with pytest.raises(ConfigError, match="No API key configured.*WANDB_MODE=offline"):
        MetricsWriter(str(tmp_path), wandb_project="proj")


def _wandb_records(path: str) -> list:
    """Records of a W&B ``.wandb`` file, decoded with wandb's own protobuf (``Record``).

    The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then
    32 KiB blocks of chunks, each with a 7-byte header (crc32, u16 length, u8 type:
    1 full, 2 first, 3 middle, 4 last) and a slice of one serialized record.
    """
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:4] == b":W&B"
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pending += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def _wandb_history(records) -> list[tuple[int, dict]]:
    history = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.append((record.history.step.num, {k: v for k, v in items.items() if not k.startswith("_")}))
    return history


def test_wandb_offline_run_holds_the_logged_scalars(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave pytest's capture of stdout/stderr alone
    workdir = tmp_path / "run"
    config = {"optim": {"learning_rate": 3e-4}, "seed": 7}
    with MetricsWriter(str(workdir), wandb_project="t1jax-test", wandb_run_name="unit", config=config) as writer:
        writer.write(1, {"loss": 2.5, "acc": np.float32(0.25)})
        writer.write(2, {"loss": 1.25})
        writer.write(2, {"loss": 1.5}, prefix="val_")
    # A resumed run continues the same W&B run (the id kept in the workdir).
    with MetricsWriter(str(workdir), wandb_project="t1jax-test", config=config) as writer:
        writer.write(3, {"loss": 0.75})

    runs = sorted(glob.glob(os.path.join(str(workdir), "**", "offline-run-*", "run-*.wandb"), recursive=True))
    assert len(runs) == 2
    run_id = (workdir / "wandb_run_id").read_text().strip()
    assert all(os.path.basename(path) == f"run-{run_id}.wandb" for path in runs)

    logged = []
    for records in map(_wandb_records, runs):
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.project == "t1jax-test" and run.run_id == run_id
        run_config = {i.key: json.loads(i.value_json) for i in run.config.update if not i.key.startswith("_")}
        logged.append((_wandb_history(records), run.display_name, run_config))
    logged.sort()  # the offline-run directories' names need not sort by time
    assert logged == [
        ([(1, {"loss": 2.5, "acc": 0.25}), (2, {"loss": 1.25, "val_loss": 1.5})], "unit", config),
        ([(3, {"loss": 0.75})], "", config),
    ]
    # JSONL is still the source of truth.
    assert [r["step"] for r in read_metrics(str(workdir / METRICS_FILENAME))] == [1, 2, 2, 3]
