"""Trial-and-error chains of thought with self-verification (T1's SFT data), and the one answer format.

Every trace has the shape   attempt -> check -> verdict [-> attempt -> check -> verdict ...] -> final line,
where the final line is exactly "Final answer: <answer>". For the built-in tasks each attempt is
a line "Try: <attempt>" (so tests can parse the attempts back and verify each one), followed by
"Check: <the arithmetic written out>" and either "Wrong, because <reason>." or "Correct.".
For real datasets the attempts come from any model, graded against the ground truth.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import random

from t1jax.data.jsonl import read_jsonl
from t1jax.data.tasks import Task, get_task
from t1jax.data.tasks.base import stable_digest
from t1jax.errors import DataError

log = logging.getLogger(__name__)

FINAL_ANSWER = "Final answer:"
INSTRUCTION = "Reason step by step, check your work, and end with a line 'Final answer: <answer>'."


def extract_final_answer(text: str) -> str | None:
    """What follows the last "Final answer:" up to the end of its line (stripped); None if absent or empty."""
    start = text.rfind(FINAL_ANSWER)
    if start < 0:
        return None
    answer = text[start + len(FINAL_ANSWER) :].split("\n", 1)[0].strip()
    return answer or None


def draw_failed_count(rng: random.Random, max_failed: int, retry_prob: float = 0.5) -> int:
    """How many wrong attempts precede the right one: each further failure with `retry_prob`,
    capped at `max_failed` (so 0 failures has probability 1 - retry_prob)."""
    failed = 0
    while failed < max_failed and rng.random() < retry_prob:
        failed += 1
    return failed


def synthesize_trace(
    task: Task, problem: dict, rng: random.Random, max_failed: int = 2, retry_prob: float = 0.5
) -> str:
    """A response for a built-in task: some plausible wrong attempts, each checked and rejected,
    then the right one, checked and accepted, then the final answer line."""
    wrong = task.wrong_attempts(problem, rng, draw_failed_count(rng, max_failed, retry_prob))
    lines = []
    for attempt in [*wrong, task.correct_attempt(problem)]:
        check, reason = task.check(problem, attempt)
        lines += [f"Try: {attempt}", f"Check: {check}.", f"Wrong, because {reason}." if reason else "Correct."]
    lines.append(f"{FINAL_ANSWER} {problem['answer']}")
    return "\n".join(lines)


def sft_examples(
    task: Task | str, split: str, n: int, seed: int, max_failed: int = 2, retry_prob: float = 0.5
) -> list[dict]:
    """`n` SFT examples {"prompt", "response", "answer"} of a task's split, reproducible from `seed`."""
    task = get_task(task) if isinstance(task, str) else task
    rng = random.Random(f"sft/{task.name}/{split}/{seed}")
    return [
        {
            "prompt": task.prompt(problem),
            "response": synthesize_trace(task, problem, rng, max_failed, retry_prob),
            "answer": problem["answer"],
        }
        for problem in task.generate(split, n, seed)
    ]


def _checked_record(record) -> tuple[str, str, list[dict]]:
    """(problem, answer, attempts) of a record, or DataError saying what is wrong with it."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}")
    for field in ("problem", "answer", "attempts"):
        if field not in record:
            raise DataError(f"missing field '{field}' (has: {', '.join(record) or 'none'})")
    problem, answer, attempts = record["problem"], record["answer"], record["attempts"]
    if not isinstance(problem, str) or not problem.strip():
        raise DataError("field 'problem' must be a non-empty string")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float) or not str(answer).strip():
        raise DataError("field 'answer' must be a non-empty string or a number")
    if not isinstance(attempts, list):
        raise DataError("field 'attempts' must be a list")
    for i, attempt in enumerate(attempts):
        if not (isinstance(attempt, dict) and isinstance(attempt.get("text"), str)):
            raise DataError(f"attempts[{i}] must be an object with a string 'text'")
        if not isinstance(attempt.get("correct"), bool):
            raise DataError(f"attempts[{i}] must have a boolean 'correct'")
        if not isinstance(attempt.get("critique", ""), str):
            raise DataError(f"attempts[{i}]: 'critique', if given, must be a string")
    return problem, str(answer).strip(), attempts


def _attempt_block(attempt: dict) -> str:
    """An attempt's text without its own final-answer line (a trace has exactly one, at the end),
    then the verification and the verdict."""
    given = extract_final_answer(attempt["text"])
    body = "\n".join(line for line in attempt["text"].strip().split("\n") if FINAL_ANSWER not in line).strip()
    verify = f"Let me verify this: it gives {given}." if given else "Let me verify this."
    if attempt.get("critique", "").strip():
        verify += " " + attempt["critique"].strip()
    verdict = "This checks out." if attempt["correct"] else "This is wrong, so let me try again."
    return "\n".join(part for part in (body, f"{verify} {verdict}") if part)


def synthesize_from_attempts(record: dict, rng: random.Random | None = None, max_failed: int = 2) -> str | None:
    """A trace from a graded record {problem, answer, attempts: [{text, correct, critique?}]}:
    up to `max_failed` wrong attempts, then one correct one, then "Final answer: <answer>".
    None when no attempt is correct. A malformed record raises DataError."""
    problem, answer, attempts = _checked_record(record)
    right = [a for a in attempts if a["correct"]]
    if not right:
        return None
    rng = rng or random.Random(stable_digest(problem))  # reproducible per record when no rng is given
    wrong = [a for a in attempts if not a["correct"]]
    chosen = rng.sample(wrong, rng.randint(0, min(max_failed, len(wrong)))) + [rng.choice(right)]
    return "\n".join([*(_attempt_block(a) for a in chosen), f"{FINAL_ANSWER} {answer}"])


def synthesize_jsonl(in_path: str, out_path: str, seed: int = 0, strict: bool = False, max_failed: int = 2) -> dict:
    """Graded-attempt records (JSONL) -> SFT lines {"prompt", "response", "answer"} (JSONL).

    Bad lines (not JSON, or not a valid record) are skipped, counted and logged with their line
    numbers; with `strict=True` the first one raises DataError naming the file and line. Records
    without a correct attempt are skipped and counted. The output appears only when complete.
    """
    data = read_jsonl(in_path, strict=strict, check=_checked_record)
    counts = {
        "records": len(data.records) + len(data.skipped),
        "written": 0,
        "bad": len(data.skipped),
        "no_correct": 0,
        "bad_lines": [n for n, _ in data.skipped],
        "no_correct_lines": [],
    }
    rng = random.Random(seed)
    target = pathlib.Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            for number, record in zip(data.line_numbers, data.records):
                trace = synthesize_from_attempts(record, rng, max_failed)
                if trace is None:
                    counts["no_correct"] += 1
                    counts["no_correct_lines"].append(number)
                    continue
                example = {"prompt": f"{record['problem'].strip()}\n{INSTRUCTION}\n", "response": trace}
                out.write(json.dumps({**example, "answer": str(record["answer"]).strip()}) + "\n")
                counts["written"] += 1
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info(
        "%s -> %s: %d written, %d bad lines %s, %d without a correct attempt",
        in_path, out_path, counts["written"], counts["bad"], counts["bad_lines"][:20], counts["no_correct"],
    )  # fmt: skip
    return counts
