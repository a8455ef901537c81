"""Minimal TensorBoard event-file writer.

TensorBoard reads ``events.out.tfevents.*`` files: a sequence of TFRecords, each
holding one serialized ``tensorflow.Event`` protobuf. Scalars are all we log, and
the messages involved are tiny, so we hand-encode the protobuf wire format here
instead of depending on TensorFlow, protobuf or tensorboardX (heavy, and prone to
version conflicts with the JAX stack). Only the standard library and numpy are used.

Record framing (TFRecord)::

    uint64 length (little-endian)
    uint32 masked_crc32c(length bytes)
    bytes  data
    uint32 masked_crc32c(data)

Messages written (field numbers from tensorflow/core/util/event.proto and
tensorflow/core/framework/summary.proto)::

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Self

import numpy as np

__all__ = ["EventWriter", "crc32c", "masked_crc32c"]


# --------------------------------------------------------------------------- CRC32C


def _make_crc32c_table() -> tuple[int, ...]:
    """Byte-at-a-time lookup table for CRC32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data``. Pure Python; fine for the small records written here."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """CRC as stored in TFRecords: rotated and offset so that CRCs of CRC-bearing data stay well distributed."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- protobuf wire format

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    """Base-128 varint. Negative int64 values are encoded as their 64-bit two's complement (10 bytes)."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _double_field(field: int, value: float) -> bytes:
    return _key(field, _FIXED64) + struct.pack("<d", value)


def _float_field(field: int, value: float) -> bytes:
    # numpy rather than struct: values beyond float32 range become inf instead of raising.
    return _key(field, _FIXED32) + np.asarray(value, dtype="<f4").tobytes()


def _int_field(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(value)


def _scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    summary_value = _bytes_field(1, tag.encode("utf-8")) + _float_field(2, value)
    summary = _bytes_field(1, summary_value)
    return _double_field(1, wall_time) + _int_field(2, step) + _bytes_field(5, summary)


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


# --------------------------------------------------------------------------- writer


class EventWriter:
    """Writes scalar summaries to a new TensorBoard event file in ``logdir``.

    Records are buffered in memory and written on :meth:`flush` / :meth:`close`. The
    file is opened in append mode, so a crash loses only the unflushed tail, and a
    name collision (same second, same host) extends the file rather than truncating it.
    """

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        filename = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = os.path.join(logdir, filename)
        self._file = open(self.path, "ab")  # noqa: SIM115 - lives as long as the writer
        self._pending: list[bytes] = []
        # The first record identifies the file format version to TensorBoard.
        header = _double_field(1, time.time()) + _bytes_field(3, b"brain.Event:2")
        self._pending.append(_record(header))
        self.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Queue one scalar; ``value`` may be any float-convertible (numpy/jax scalar)."""
        if self._file is None:
            raise ValueError("EventWriter is closed")
        self._pending.append(_record(_scalar_event(tag, float(value), int(step), time.time())))

    def flush(self) -> None:
        if self._file is None:
            return
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        self._file.close()
        self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
