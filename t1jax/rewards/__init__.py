"""Rewards: the only signal RL has, so a grader that is wrong, slow, hangs or can be gamed ruins training.

- `extract_answer(text)`: the last \\boxed{...} (or \\fbox), else the last "answer:" line, else "#### n".
- `is_equivalent(pred, gold)`, `grade(response, gold)`: in-process, bounded, no eval anywhere:
  answers are parsed by our own tokenizer and recursive-descent parser into sympy objects.
- `Grader` / `grade_batch`: worker processes with a hard per-item timeout; verdicts per item.
- `task_reward(task, problem, response)`: the built-in tasks' own exact verifiers.
- `apply_penalties` (penalties.py): T1's -1 for truncated, repetitive or garbage responses.
- verifiers.py: what RL grades with, `verify_batch(problems, responses)`: `TaskVerifier` (a
  built-in task) or `MathVerifier` (the grader's pool); imported from there, not here, so the
  grading workers never load the tasks. `readable_gold` (grading.py): whether a reference
  answer can be read at all (RL skips and counts rows whose answer cannot).

Equivalence conventions (details in equivalence.py, normalize.py and parser.py):
- decimals are exact (0.5 == \\frac12, 0.333 != \\frac13); "1,000" == 1000 but "1,2" is a list;
- percent and degree signs and units are notation: 50\\% == 50 (not 0.5), 30^\\circ == 30;
- "e" is Euler's number, "i" the imaginary unit; "2\\frac12" is the mixed number 5/2;
- tuples and intervals are ordered with matching brackets; lists and sets are unordered;
- "x = 3" == 3; equations are equal up to a nonzero factor; \\pm gives both values.
"""

from t1jax.rewards.equivalence import is_equivalent
from t1jax.rewards.extract import extract_answer
from t1jax.rewards.grading import Verdict, grade, grade_verdict
from t1jax.rewards.limits import MAX_ANSWER_CHARS, UnreadableAnswer
from t1jax.rewards.penalties import PenaltyConfig, RewardBreakdown, apply_penalties
from t1jax.rewards.pool import BatchResult, Grader, GraderError, grade_batch
from t1jax.rewards.task_reward import task_reward

__all__ = [
    "MAX_ANSWER_CHARS",
    "BatchResult",
    "Grader",
    "GraderError",
    "PenaltyConfig",
    "RewardBreakdown",
    "UnreadableAnswer",
    "Verdict",
    "apply_penalties",
    "extract_answer",
    "grade",
    "grade_batch",
    "grade_verdict",
    "is_equivalent",
    "task_reward",
]
