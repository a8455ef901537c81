"""Math benchmarks (MATH500, GSM8K test, AIME 2024, or any JSONL) with a \\boxed{} prompt.

The same reader serves evaluation (strict: a bad row is an error naming its line) and RL on a
math JSONL (lenient: bad rows are skipped and counted by reason, see `read_benchmark`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib

from t1jax.data.jsonl import read_jsonl
from t1jax.errors import DataError

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
KNOWN = {"math500": "math500.jsonl", "gsm8k": "gsm8k.jsonl", "aime24": "aime24.jsonl"}
# How a row's answer field holds the final answer: "plain" (it is the answer) or "gsm8k" (GSM8K's
# worked solution, the answer after its last "####").
ANSWER_FORMATS = ("plain", "gsm8k")
GSM8K_MARKER = "####"


def benchmarks_dir() -> pathlib.Path:
    """$T1JAX_BENCHMARKS, else the test sets shipped with the package (benchmark_sets/, whose
    README.md gives each file's source and licence)."""
    if os.environ.get("T1JAX_BENCHMARKS"):
        return pathlib.Path(os.environ["T1JAX_BENCHMARKS"])
    return pathlib.Path(__file__).resolve().parent / "benchmark_sets"


def boxed_prompt(problem: str) -> str:
    return f"{problem.strip()}\n{BOXED_INSTRUCTION}\n"


class BadRow(DataError):
    """A JSON object that is not a usable problem; `reason` is "no_problem" or "no_answer"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class Benchmark:
    path: str
    rows: list[dict]  # {"id", "problem", "answer", "prompt"}
    # rows skipped, by reason: "unreadable_line" (not a JSON object), "no_problem", "no_answer"
    skipped: collections.Counter

    @property
    def lines(self) -> int:
        """Non-blank lines read: the rows kept and those skipped."""
        return len(self.rows) + sum(self.skipped.values())


def final_answer(value, field: str, answer_format: str = "plain") -> str:
    """The reference answer held in a row's `field` (a string, or a number in some files)."""
    if value is None:
        raise BadRow("no_answer", f"missing field '{field}'")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow("no_answer", f"field '{field}' must be a string or a number, got {type(value).__name__}")
    answer = str(value).strip()
    if answer_format == "gsm8k":
        if GSM8K_MARKER not in answer:
            raise BadRow("no_answer", f"field '{field}' has no '{GSM8K_MARKER}' before its final answer")
        answer = answer.rpartition(GSM8K_MARKER)[2].strip().replace(",", "")  # GSM8K writes 1,000 for 1000
    elif answer_format != "plain":
        raise DataError(f"unknown answer format {answer_format!r}; known: {', '.join(ANSWER_FORMATS)}")
    if not answer:
        raise BadRow("no_answer", f"field '{field}' holds no answer")
    return answer


def _row(record: dict, line: int, problem_field: str, answer_field: str, id_field: str, answer_format: str) -> dict:
    if problem_field not in record:
        raise BadRow("no_problem", f"missing field '{problem_field}' (has: {', '.join(record) or 'none'})")
    problem = record[problem_field]
    if not isinstance(problem, str) or not problem.strip():
        raise BadRow("no_problem", f"field '{problem_field}' must be a non-empty string")
    return {
        "id": str(record.get(id_field, line)),
        "problem": problem,
        "answer": final_answer(record.get(answer_field), answer_field, answer_format),
        "prompt": boxed_prompt(problem),
    }


def read_benchmark(
    name_or_path: str,
    problem_field: str = "problem",
    answer_field: str = "answer",
    id_field: str = "id",
    strict: bool = True,
    answer_format: str = "plain",
) -> Benchmark:
    """The rows of a known benchmark name or a JSONL path (see `load_benchmark`).

    A bad line (not a JSON object, no problem, no answer) raises DataError naming the file and
    line when `strict`, else it is skipped and counted by reason. A file with no usable row is a
    DataError naming the file either way.
    """
    path = pathlib.Path(name_or_path)
    if name_or_path in KNOWN:
        path = benchmarks_dir() / KNOWN[name_or_path]
        if not path.is_file():
            raise DataError(f"benchmark '{name_or_path}' not found at {path} (set T1JAX_BENCHMARKS)")
    data = read_jsonl(str(path), strict=strict)
    benchmark = Benchmark(str(path), [], collections.Counter(unreadable_line=len(data.skipped)))
    for line, record in zip(data.line_numbers, data.records):
        try:
            benchmark.rows.append(_row(record, line, problem_field, answer_field, id_field, answer_format))
        except BadRow as e:
            if strict:
                raise DataError(f"{path}, line {line}: {e}") from None
            benchmark.skipped[e.reason] += 1
    if not benchmark.rows:
        counts = ", ".join(f"{n} {reason}" for reason, n in benchmark.skipped.items() if n)
        raise DataError(f"{path} holds no usable problem ({counts})")
    return benchmark


def load_benchmark(
    name_or_path: str,
    problem_field: str = "problem",
    answer_field: str = "answer",
    id_field: str = "id",
    strict: bool = True,
    answer_format: str = "plain",
) -> list[dict]:
    """Rows {"id", "problem", "answer", "prompt"} of a known benchmark name or a JSONL path.

    Field names are configurable for other files; rows without an id get their line number;
    `answer_format` "gsm8k" reads the answer after the last "####" of the answer field.
    """
    return read_benchmark(name_or_path, problem_field, answer_field, id_field, strict, answer_format).rows
