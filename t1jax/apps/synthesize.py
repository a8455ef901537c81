"""`t1jax synthesize`: T1 SFT data from a run's own attempts at math problems.

Each problem of a JSONL file (or a shipped benchmark) is asked with the \\boxed{} prompt that
evaluation uses; the run's model makes N attempts (the `sampling` section's strategy and token
limit, as `t1jax sample`),
the math grader judges each in worker processes with a hard per-item timeout, and
data/t1_traces.py turns the graded attempts into a trial-and-error trace. The output lines
{"prompt", "response", ...} are what `t1jax sft` reads with sft.data_path (the loss on the
response only, the prompt format data.prompt_format applied there).
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import sys
import time

from t1jax.data.benchmarks import KNOWN, benchmarks_dir, load_benchmark
from t1jax.data.chat import format_prompt, stop_ids
from t1jax.data.jsonl import read_jsonl
from t1jax.data.t1_traces import GradedAttempt, compose_trace
from t1jax.errors import ConfigError, DataError
from t1jax.eval.generation import Generate, Generation, ModelGenerator
from t1jax.rewards import Grader, Verdict, extract_answer
from t1jax.runtime.progress import Progress
from t1jax.runtime.run_dir import check_run_dir, load_run, run_layout
from t1jax.sampling import Sampler, strategy_for

GRADE_TIMEOUT_S = 5.0  # per attempt, as evaluation grades benchmarks
GRADE_CHUNK = 512  # attempts per grading call (one progress update each)


def load_problems(data: str, problem_field: str, answer_field: str, reference_field: str | None) -> list[dict]:
    """load_benchmark's rows {"id", "problem", "answer", "prompt"}, each with "reference": the
    record's `reference_field` (a solution text) if asked for and present, else None."""
    rows = load_benchmark(data, problem_field, answer_field)
    for row in rows:
        row["reference"] = None
    if reference_field:
        path = benchmarks_dir() / KNOWN[data] if data in KNOWN else data
        # load_benchmark read the file strictly, so a strict read gives the same records in order.
        records = read_jsonl(str(path)).records
        for row, record in zip(rows, records):
            text = record.get(reference_field)
            row["reference"] = text if isinstance(text, str) and text.strip() else None
        if all(row["reference"] is None for row in rows):
            raise DataError(f"--reference {reference_field}: no record of {data} has a non-empty '{reference_field}'")
    return rows


def model_generator(
    config, run: str, prompts: list[str], num_attempts: int, seed: int, batch_prompts: int
) -> ModelGenerator:
    """The run's model behind eval's Generate interface: `num_attempts` per prompt, `batch_prompts`
    prompts per sampler call (what bounds the KV cache)."""
    sp, fmt = config.sampling, config.data.prompt_format
    layout = run_layout(run, config)
    _, params, tokenizer = load_run(run, config=config, layout=layout, key="--run")
    max_prompt_len = max(len(format_prompt(tokenizer, p, fmt)) for p in prompts)
    sampler = Sampler(
        layout.model_config, strategy_for(sp), sp.max_new_tokens, num_attempts, stop_ids(tokenizer, fmt),
        tokenizer.pad_id, max_prompt_len, layout, config.sampling.stage_tokens,
    )  # fmt: skip
    label = "synthesize: sampling" if config.run.progress else ""
    return ModelGenerator(sampler, tokenizer, params, seed, batch_prompts, label, fmt)


def grade_attempts(rows: list[dict], samples: list[list[Generation]], progress: bool) -> list[list[GradedAttempt]]:
    """Each problem's attempts with the answer read from them and the grader's verdict."""
    flat = [(i, g) for i, row in enumerate(samples) for g in row]
    verdicts: list[Verdict] = []
    with Grader(timeout_s=GRADE_TIMEOUT_S) as grader, Progress(len(flat), "synthesize: grading", progress) as bar:
        for start in range(0, len(flat), GRADE_CHUNK):
            part = flat[start : start + GRADE_CHUNK]
            result = grader.grade_batch([g.text for _, g in part], [rows[i]["answer"] for i, _ in part])
            verdicts += result.verdicts
            bar.update(len(verdicts))
    graded: list[list[GradedAttempt]] = [[] for _ in rows]
    for (i, g), verdict in zip(flat, verdicts):
        graded[i].append(GradedAttempt(g.text, extract_answer(g.text), verdict, g.truncated))
    return graded


def check_options(num_attempts: int, max_wrong: int, batch_prompts: int, temperature: float) -> None:
    for name, value, least in (("num_attempts", num_attempts, 1), ("max_wrong", max_wrong, 0),
                               ("batch_prompts", batch_prompts, 1)):  # fmt: skip
        if value < least:
            raise ConfigError(f"--{name} must be >= {least}, got {value}")
    if temperature == 0 and num_attempts > 1:
        raise ConfigError(
            f"sampling.temperature=0 (greedy) gives {num_attempts} identical attempts: "
            "set a temperature or --num_attempts 1"
        )


def run_synthesize(
    config,
    run: str,
    data: str | None,
    out: str | None,
    num_attempts: int = 8,
    max_wrong: int = 2,
    reference: str | None = None,
    problem_field: str = "problem",
    answer_field: str = "answer",
    seed: int | None = None,
    batch_prompts: int = 64,
    generate: Generate | None = None,
) -> dict:
    """Samples, grades and composes; writes the traces to `out` (complete or not at all) and
    returns the counts. `generate` replaces the run's model (tests)."""
    if not data or not out:
        raise ConfigError("synthesize needs --data FILE (JSONL or a benchmark name) and --out FILE")
    seed = config.sampling.seed if seed is None else seed
    check_options(num_attempts, max_wrong, batch_prompts, config.sampling.temperature)
    started = time.perf_counter()
    rows = load_problems(data, problem_field, answer_field, reference)
    check_out(out)  # before the sampling, not after it
    prompts = [row["prompt"] for row in rows]
    if generate is None:
        check_run_dir(run, "--run")
        generate = model_generator(config, run, prompts, num_attempts, seed, batch_prompts)
    graded = grade_attempts(rows, generate(prompts, num_attempts), config.run.progress)

    counts = {"problems": len(rows), "attempts": 0, "right_attempts": 0, "wrong_attempts": 0,
              "no_answer_attempts": 0, "ungraded_attempts": 0, "truncated_attempts": 0,
              "problems_with_a_right_attempt": 0, "traces": 0, "traces_from_reference": 0,
              "problems_left_out": 0}  # fmt: skip
    lines = []
    for row, attempts in zip(rows, graded):
        verdicts = [a.verdict for a in attempts]
        counts["attempts"] += len(attempts)
        counts["right_attempts"] += verdicts.count(Verdict.CORRECT)
        counts["wrong_attempts"] += verdicts.count(Verdict.WRONG)
        counts["no_answer_attempts"] += verdicts.count(Verdict.NO_ANSWER)
        counts["ungraded_attempts"] += verdicts.count(Verdict.TIMED_OUT) + verdicts.count(Verdict.ERROR)
        counts["truncated_attempts"] += sum(a.truncated for a in attempts)
        counts["problems_with_a_right_attempt"] += Verdict.CORRECT in verdicts
        rng = random.Random(f"synthesize/{seed}/{row['id']}")  # a problem's trace does not depend on the others
        trace = compose_trace(attempts, row["answer"], rng, max_wrong, row["reference"])
        if trace is None:
            counts["problems_left_out"] += 1
            continue
        counts["traces"] += 1
        counts["traces_from_reference"] += trace.from_reference
        lines.append(
            {"id": row["id"], "prompt": row["prompt"], "response": trace.text, "answer": row["answer"],
             "num_wrong": trace.num_wrong, "from_reference": trace.from_reference}
        )  # fmt: skip
    write_jsonl(out, lines)
    summary = {"run": run, "data": data, "out": out, "num_attempts": num_attempts, "max_wrong": max_wrong,
               "reference": reference, "seed": seed, **counts,
               "elapsed_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    print(
        f"synthesize: {counts['problems']} problems, {counts['attempts']} attempts, {counts['right_attempts']} right; "
        f"{counts['traces']} traces ({counts['traces_from_reference']} completed from the reference), "
        f"{counts['problems_left_out']} problems left out -> {out}",
        file=sys.stderr,
    )
    return summary


def check_out(path: str) -> None:
    """The output's folder, created if needed; an error if it cannot take the file."""
    target = pathlib.Path(path)
    if target.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot create its folder: {e.strerror or e}") from None
    if not os.access(target.parent, os.W_OK):
        raise ConfigError(f"--out {path}: its folder is not writable")


def write_jsonl(path: str, lines: list[dict]) -> None:
    """All lines, or nothing: a partial file is never left under `path`."""
    target = pathlib.Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        os.replace(partial, target)
    except OSError as e:
        raise ConfigError(f"--out {path} cannot be written: {e.strerror or e}") from None
    finally:
        partial.unlink(missing_ok=True)
