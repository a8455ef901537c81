"""Report writers: GitHub markdown tables for the demo report, and JSON result files.

JSON is written atomically (temp file in the same directory, then os.replace) so that a crash or a concurrent
reader never sees a half-written results file, and numpy values are converted because json refuses them.
NaN/inf become null: strict JSON has no spelling for them, and other tools (jq, browsers) reject Python's.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MISSING = "—"


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    # A "|" would end the cell and a newline the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".3f"
) -> str:
    """GitHub markdown table: header, separator, one line per row (no trailing newline).

    Columns default to the first row's keys in order; a key missing from a row (or None) shows as "—";
    floats (numpy ones too) use `floatfmt`, everything else str().
    """
    if columns is None:
        if not rows:
            raise ValueError("markdown_table needs columns when there are no rows")
        columns = list(rows[0].keys())
    if not columns:
        raise ValueError("markdown_table needs at least one column")
    lines = [
        "| " + " | ".join(_cell(c, floatfmt) for c in columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row.get(c), floatfmt) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """A copy of `obj` that json.dump accepts: numpy scalars/arrays -> Python numbers/lists, tuples -> lists,
    non-finite floats -> None, numpy dict keys -> Python scalars. Other unknown types are left for json to refuse."""
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {(k.item() if isinstance(k, np.generic) else k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> str:
    """Write `obj` as JSON (indent 2, keys in their given order) atomically; creates parent dirs; returns the path."""
    path = os.fspath(path)
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False) + "\n"
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
