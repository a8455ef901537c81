"""Reading JSONL files: bad lines are skipped and counted (or fatal), always named by line."""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable

from t1jax.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class JsonlData:
    path: str
    records: list[dict]
    line_numbers: list[int]  # line of each record
    skipped: list[tuple[int, str]]  # (line, reason) of every bad line

    def summary(self) -> str:
        lines = ", ".join(str(n) for n, _ in self.skipped[:10]) + (" ..." if len(self.skipped) > 10 else "")
        bad = f"; skipped {len(self.skipped)} bad lines ({lines})" if self.skipped else ""
        return f"{self.path}: {len(self.records)} records{bad}"


def read_jsonl(
    path: str, fields: tuple[str, ...] = (), strict: bool = True, check: Callable[[dict], object] | None = None
) -> JsonlData:
    """Records of a JSONL file: objects with string values for `fields` that pass `check`
    (which raises DataError with a reason for a bad record).

    Blank lines are ignored. A bad line raises DataError naming the file and line when
    `strict`, else it is skipped, counted and logged. A file with no good record is an error.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {path}")
    data = JsonlData(str(path), [], [], [])
    try:
        with file.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = _parse(line, fields, check)
                except DataError as e:
                    if strict:
                        raise DataError(f"{path}, line {number}: {e}") from None
                    log.warning("%s, line %d: skipped: %s", path, number, e)
                    data.skipped.append((number, str(e)))
                    continue
                data.records.append(record)
                data.line_numbers.append(number)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text") from None
    if not data.records:
        raise DataError(f"{path} holds no valid records" + (f" ({data.summary()})" if data.skipped else ""))
    return data


def _parse(line: str, fields: tuple[str, ...], check) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}")
    for field in fields:
        if field not in record:
            raise DataError(f"missing field '{field}' (has: {', '.join(record) or 'none'})")
        if not isinstance(record[field], str):
            raise DataError(f"field '{field}' must be a string")
    if check is not None:
        check(record)
    return record
