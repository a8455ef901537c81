"""Math benchmarks (MATH500, GSM8K test, AIME 2024, or any JSONL) with a \\boxed{} prompt."""

from __future__ import annotations

import os
import pathlib

from t1jax.data.jsonl import read_jsonl
from t1jax.errors import DataError

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
KNOWN = {"math500": "math500.jsonl", "gsm8k": "gsm8k.jsonl", "aime24": "aime24.jsonl"}


def benchmarks_dir() -> pathlib.Path:
    """$T1JAX_BENCHMARKS, else the test sets shipped with the package (benchmark_sets/, whose
    README.md gives each file's source and licence)."""
    if os.environ.get("T1JAX_BENCHMARKS"):
        return pathlib.Path(os.environ["T1JAX_BENCHMARKS"])
    return pathlib.Path(__file__).resolve().parent / "benchmark_sets"


def boxed_prompt(problem: str) -> str:
    return f"{problem.strip()}\n{BOXED_INSTRUCTION}\n"


def load_benchmark(
    name_or_path: str,
    problem_field: str = "problem",
    answer_field: str = "answer",
    id_field: str = "id",
    strict: bool = True,
) -> list[dict]:
    """Rows {"id", "problem", "answer", "prompt"} of a known benchmark name or a JSONL path.

    Field names are configurable for other files; rows without an id get their line number.
    """
    path = pathlib.Path(name_or_path)
    if name_or_path in KNOWN:
        path = benchmarks_dir() / KNOWN[name_or_path]
        if not path.is_file():
            raise DataError(f"benchmark '{name_or_path}' not found at {path} (set T1JAX_BENCHMARKS)")

    def has_answer(record: dict) -> None:  # answers may be numbers in other files
        if record.get(answer_field) is None:
            raise DataError(f"missing field '{answer_field}'")

    data = read_jsonl(str(path), (problem_field,), strict=strict, check=has_answer)
    rows = []
    for line, record in zip(data.line_numbers, data.records):
        problem = record[problem_field]
        rows.append(
            {
                "id": str(record.get(id_field, line)),
                "problem": problem,
                "answer": str(record[answer_field]).strip(),
                "prompt": boxed_prompt(problem),
            }
        )
    return rows
