"""Reading JSONL files with errors that name the file and line."""

from __future__ import annotations

import json
import pathlib

from t1jax.errors import DataError


def read_jsonl(path: str, fields: tuple[str, ...]) -> list[dict]:
    """Records of a JSONL file; each must be an object with string values for `fields`.

    Blank lines are skipped; anything else that is not such an object is an error.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {path}")
    records = []
    with file.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
            for field in fields:
                if field not in record:
                    raise DataError(
                        f"{path}, line {number}: missing field '{field}' (has: {', '.join(record) or 'none'})"
                    )
                if not isinstance(record[field], str):
                    raise DataError(f"{path}, line {number}: field '{field}' must be a string")
            records.append(record)
    if not records:
        raise DataError(f"{path} holds no records")
    return records
