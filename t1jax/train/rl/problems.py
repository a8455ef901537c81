"""What an RL run trains on: its problems and the verifier that grades their responses.

Either the built-in task `rl.task` (its train split; its exact verifier) or a math JSONL
`rl.data_path` (its usable rows; the symbolic grader in worker processes). Each problem carries
the text of its prompt ("prompt", rendered by data.prompt_format like any other) and what its
verifier reads; the loop sees nothing else.

Bad rows never crash a run: rows that are not JSON objects, lack a problem or an answer, hold an
answer the grader cannot read, or whose prompt is longer than sampling.max_prompt_len are
skipped and counted by reason. A source with no usable problem is a DataError naming it.
"""

from __future__ import annotations

import collections
import dataclasses

from t1jax.data.benchmarks import read_benchmark
from t1jax.data.chat import format_prompt
from t1jax.data.tasks import task_from_config
from t1jax.errors import DataError
from t1jax.rewards.grading import Verdict, readable_gold
from t1jax.rewards.pool import Grader
from t1jax.rewards.verifiers import MathVerifier, TaskVerifier

# Why a row was skipped, as the start-up line words it.
SKIP_REASONS = {
    "unreadable_line": "not a JSON object",
    "no_problem": "without a problem",
    "no_answer": "without an answer",
    "unreadable_answer": "with an answer the grader cannot read",
    "too_long": "longer than sampling.max_prompt_len",
}


@dataclasses.dataclass
class ProblemSet:
    source: str  # the task's name or the JSONL's path
    problems: list[dict]  # each has "prompt" (text) and what the verifier reads
    skipped: collections.Counter  # rows skipped, by reason (SKIP_REASONS)

    def counts(self) -> dict[str, int]:
        """For the run's summary: usable problems and skipped rows by reason (zeros included)."""
        return {"data_problems": len(self.problems), **{f"data_skipped_{k}": self.skipped[k] for k in SKIP_REASONS}}

    def report(self) -> str:
        """One line for stderr at start: where the prompts come from and what was skipped."""
        rows = len(self.problems) + sum(self.skipped.values())
        skipped = ", ".join(f"{self.skipped[k]} {words}" for k, words in SKIP_REASONS.items() if self.skipped[k])
        return f"RL prompts from {self.source}: {len(self.problems)} usable of {rows} rows" + (
            f"; skipped {skipped}" if skipped else ""
        )


def problem_set(config, tokenizer) -> tuple[ProblemSet, TaskVerifier | MathVerifier]:
    """The problems of config's RL run and the verifier of their responses (see the module
    docstring). The prompt of every problem is encoded once here to check its length."""
    r = config.rl
    task = None if r.data_path else task_from_config(config, r.task)
    if task is None:
        source, (problems, skipped) = r.data_path, _math_problems(r)
    else:
        problems = [{**p, "prompt": task.prompt(p)} for p in task.generate("train", r.num_prompts, config.run.seed)]
        source, skipped = r.task, collections.Counter()
    limit = config.sampling.max_prompt_len
    fits = [len(format_prompt(tokenizer, p["prompt"], config.data.prompt_format)) <= limit for p in problems]
    skipped["too_long"] += fits.count(False)
    result = ProblemSet(source, [p for p, ok in zip(problems, fits) if ok], skipped)
    if not result.problems:
        raise DataError(f"no usable problem: {result.report()} (sampling.max_prompt_len: {limit} tokens)")
    if task is not None:
        return result, TaskVerifier(task)
    return result, MathVerifier(Grader(workers=r.grade_workers or None, timeout_s=r.grade_timeout_s))


def _math_problems(r) -> tuple[list[dict], collections.Counter]:
    """The rows of rl.data_path whose answer the grader can read, and the skipped rows' counts."""
    data = read_benchmark(r.data_path, r.problem_field, r.answer_field, strict=False, answer_format=r.answer_format)
    golds = [row["answer"] for row in data.rows]
    with Grader(workers=r.grade_workers or None, timeout_s=r.grade_timeout_s, grade_fn=readable_gold) as grader:
        readable = [v is Verdict.CORRECT for v in grader.grade_batch([""] * len(golds), golds).verdicts]
    skipped = collections.Counter(data.skipped)
    skipped["unreadable_answer"] += readable.count(False)
    return [row for row, ok in zip(data.rows, readable) if ok], skipped
