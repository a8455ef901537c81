"""Resumable stages: a stage that finished left `<workdir>/stages/<name>.json`, so a rerun skips it.

Stages that train (SFT, RL) also resume from their own checkpoints when they were interrupted;
the others are minutes long and simply run again.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Callable

from t1jax.eval.report import write_json


class StageLog:
    def __init__(self, directory: pathlib.Path):
        self.directory = directory

    def path(self, name: str) -> pathlib.Path:
        return self.directory / f"{name}.json"

    def run(self, name: str, fn: Callable[[], dict], title: str) -> dict:
        """fn()'s result with "seconds" added, from the stage file if the stage already ran."""
        path = self.path(name)
        if path.is_file():
            print(f"== {title}: done earlier ({path})", file=sys.stderr)
            return json.loads(path.read_text())
        print(f"== {title}", file=sys.stderr)
        start = time.perf_counter()
        result = {**fn(), "seconds": time.perf_counter() - start}
        write_json(path, result)
        return result
