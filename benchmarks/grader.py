"""Answer-grading throughput: answers graded per second through the worker pool (1 and 2
workers) and in-process, on MATH500 reference solutions against their answers.

Two workloads over the same 500 rows:
  - "solutions": each reference solution graded against its answer (extraction, normalization,
    mostly equal after normalization: the cheap, common case of a correct response);
  - "perturbed": the answer with its first digit changed, graded against the real answer, so each
    item goes through the parser and the symbolic/numeric comparison (the expensive case).
Also reported: pool start-up time, and the load average around the run (on a shared machine, a
load well above 0 means the figures are slowed by other processes).

Run:  python benchmarks/grader.py [--repeats 3] [--timeout 5]
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import time

from common import machine_info

from t1jax.rewards import Grader, grade_verdict

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "math500.jsonl"


def workloads() -> dict[str, tuple[list[str], list[str]]]:
    with open(DATA, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    golds = [row["answer"] for row in rows]
    perturbed = []
    for gold in golds:
        digit = re.search(r"\d", gold)
        changed = (
            gold if digit is None else gold[: digit.start()] + str((int(digit.group()) + 1) % 10) + gold[digit.end() :]
        )
        perturbed.append(f"So the answer is $\\boxed{{{changed}}}$.")
    return {"solutions": ([row["solution"] for row in rows], golds), "perturbed": (perturbed, golds)}


def bench_pool(workers: int, responses: list[str], golds: list[str], repeats: int, timeout_s: float) -> dict:
    start = time.perf_counter()
    with Grader(workers=workers, timeout_s=timeout_s) as grader:
        startup_s = time.perf_counter() - start
        grader.grade_batch(responses[:20], golds[:20])  # warm-up: first-call caches in each worker
        begin = time.perf_counter()
        for _ in range(repeats):
            result = grader.grade_batch(responses, golds)
        elapsed = time.perf_counter() - begin
    return {
        "workers": workers,
        "startup_s": round(startup_s, 3),
        "answers_per_s": round(len(responses) * repeats / elapsed, 1),
        "counts": result.counts,
    }


def bench_in_process(responses: list[str], golds: list[str], repeats: int) -> dict:
    begin = time.perf_counter()
    for _ in range(repeats):
        for response, gold in zip(responses, golds):
            grade_verdict(response, gold)
    return {"answers_per_s": round(len(responses) * repeats / (time.perf_counter() - begin), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    report = {"benchmark": "grader", "machine": machine_info(), "data": str(DATA), "repeats": args.repeats}
    for name, (responses, golds) in workloads().items():
        report[name] = {
            "items": len(responses),
            "in_process": bench_in_process(responses, golds, args.repeats),
            "pool": [bench_pool(w, responses, golds, args.repeats, args.timeout) for w in (1, 2)],
        }
    report["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
