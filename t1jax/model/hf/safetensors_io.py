"""Reading blocks of tensors from a (sharded) safetensors checkpoint, and writing one.

Reading: `model.safetensors`, or the shards that `model.safetensors.index.json` names. Every
shard's header is read first (names, shapes, dtypes), so a missing shard, a corrupt header or a
tensor missing from its shard is an error naming the file before any weight is read; then
`read(key, index)` reads just that block (safetensors reads only the bytes of the slice; bf16
arrives as ml_dtypes.bfloat16).

Writing: shards of at most `max_shard_bytes` streamed one tensor at a time (a shard is never
built in memory), `model-0000k-of-0000n.safetensors` and the index, metadata {"format": "pt"}.
"""

from __future__ import annotations

import json
import pathlib
import struct
from collections.abc import Callable

import ml_dtypes
import numpy as np
from safetensors import safe_open

from t1jax.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
DTYPE_NAMES = {np.dtype(np.float32): "F32", np.dtype(ml_dtypes.bfloat16): "BF16", np.dtype(np.float16): "F16"}


class SafetensorsReader:
    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory)
        self.entries: dict[str, tuple[str, tuple[int, ...], str]] = {}  # key -> (file, shape, dtype)
        index = self.directory / INDEX_FILE
        if index.is_file():
            weight_map = _read_index(index)
            files = sorted(set(weight_map.values()))
            for name in files:
                if not (self.directory / name).is_file():
                    raise CheckpointError(f"{self.directory / name}: missing (a shard that {index} names)")
        elif (self.directory / SINGLE_FILE).is_file():
            weight_map, files = None, [SINGLE_FILE]
        else:
            raise CheckpointError(f"{self.directory}: no {SINGLE_FILE} nor {INDEX_FILE}")
        for name in files:
            for key, shape, dtype in _header(self.directory / name):
                if weight_map is None or weight_map.get(key) == name:
                    self.entries[key] = (name, shape, dtype)
        for key, name in (weight_map or {}).items():
            if key not in self.entries:
                raise CheckpointError(f"{self.directory / name}: has no tensor {key} (named in {index})")

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def keys(self) -> list[str]:
        return list(self.entries)

    def file(self, key: str) -> pathlib.Path:
        return self.directory / self.entries[key][0]

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key][1]

    def dtype(self, key: str) -> str:
        """safetensors' name of the tensor's dtype: "BF16", "F32", ..."""
        return self.entries[key][2]

    def read(self, key: str, index: tuple[slice, ...]) -> np.ndarray:
        """That block of the tensor `key`, in a fresh buffer. The file is opened (memory-mapped)
        for this read alone: its pages leave the process's memory with the block in hand."""
        path = self.directory / self.entries[key][0]
        with _open(path) as f:
            try:
                return f.get_slice(key)[index]
            except Exception as e:  # safetensors raises its own error type
                raise CheckpointError(f"{path}: cannot read {key}: {_first_line(e)}") from e


def _read_index(index: pathlib.Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a safetensors index ({type(e).__name__}: {e})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: weight_map must map tensor names to file names")
    return weight_map


def _open(path: pathlib.Path):
    try:
        return safe_open(str(path), framework="numpy")
    except Exception as e:  # SafetensorError, OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from e


def _header(path: pathlib.Path) -> list[tuple[str, tuple[int, ...], str]]:
    with _open(path) as f:
        out = []
        for key in f.keys():
            block = f.get_slice(key)
            out.append((key, tuple(block.get_shape()), block.get_dtype()))
        return out


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:300]


# ---------------------------------------------------------------------------------------- writing


def write_sharded(
    directory: str | pathlib.Path,
    tensors: list[tuple[str, tuple[int, ...], np.dtype, Callable[[], np.ndarray]]],
    max_shard_bytes: int,
    metadata: dict | None = None,
) -> dict:
    """Writes `tensors` ((key, shape, dtype, make the array), in order) as shards of at most
    `max_shard_bytes` (a larger tensor gets a shard of its own) and their index; returns the
    index. Each array is made, written and dropped in turn."""
    directory = pathlib.Path(directory)
    metadata = {"format": "pt", **(metadata or {})}
    shards: list[list] = [[]]
    size = 0
    for entry in tensors:
        nbytes = int(np.prod(entry[1], dtype=np.int64)) * np.dtype(entry[2]).itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        total += _write_file(directory / name, shard, metadata)
        weight_map.update({key: name for key, *_ in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return index


def _write_file(path: pathlib.Path, shard: list, metadata: dict) -> int:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for key, shape, dtype, _ in shard:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[key] = {
            "dtype": DTYPE_NAMES[np.dtype(dtype)],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for key, shape, dtype, make in shard:
            array = np.ascontiguousarray(make(), dtype=dtype)
            if array.shape != tuple(shape):
                raise ValueError(f"{key}: made an array of shape {array.shape}, expected {tuple(shape)}")
            f.write(array.reshape(-1).view(np.uint8).data)  # little-endian, as every host JAX runs on
            del array
    tmp.replace(path)
    return offset
