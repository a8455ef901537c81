"""T1's SFT traces from a model's own graded attempts at a math problem.

A trace is some wrong attempts, each followed by a check that rejects it, then a right attempt
followed by a check that accepts it, then the one boxed answer:

    <wrong attempt>
    Check: this gives 12, but 12 does not match the correct answer, so this attempt has a mistake. Let me try again.

    <right attempt>
    Check: this gives 7, which matches the correct answer.

    The final answer is \\boxed{7}.

Every check states only what the grader found (the attempt's answer, equivalent or not to the
reference answer; no answer at all), so no trace claims a verification that did not happen. The
attempts' own \\boxed{} are unboxed, so the final line holds the trace's only box: inference
scaling finds where the reasoning ends by the first "\\boxed{".

Attempts that ran out of tokens (their text is cut) or that the grader could not judge (timed
out, error) are never used. A problem without a usable right attempt gets no trace, unless a
reference solution is given: then it takes the right attempt's place.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence

from t1jax.rewards.grading import Verdict

FINAL_LINE = "The final answer is \\boxed{{{answer}}}."
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])[ \t]*")


@dataclasses.dataclass(frozen=True)
class GradedAttempt:
    text: str  # the attempt as the model wrote it
    answer: str | None  # the final answer the grader read from it; None: it gives none
    verdict: Verdict
    truncated: bool = False  # it hit the token limit before a stop token


@dataclasses.dataclass(frozen=True)
class Trace:
    text: str
    num_wrong: int  # wrong attempts before the right one
    from_reference: bool  # the right attempt is the reference solution


def unbox(text: str) -> str:
    """`text` with every \\boxed{x} (or \\fbox{x}) replaced by x; a box left unclosed loses its command."""
    out, position = [], 0
    for match in _BOX.finditer(text):
        if match.start() < position:  # inside a box already copied
            continue
        out.append(text[position : match.start()])
        position = match.end()
        close = _closing_brace(text, position) if text.startswith("{", position) else None
        if close is not None:
            out.append(unbox(text[position + 1 : close]))
            position = close + 1
    out.append(text[position:])
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the '}' that closes the '{' at `start` (escaped braces skipped), None if unclosed."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
        i += 1
    return None


def _inline(answer: str) -> str:
    return " ".join(answer.split())


def wrong_check(answer: str | None) -> str:
    if answer is None:
        return "Check: this attempt does not reach a final answer. Let me try again."
    answer = _inline(answer)
    return (
        f"Check: this gives {answer}, but {answer} does not match the correct answer, so this attempt has a mistake. "
        "Let me try again."
    )


def right_check(answer: str) -> str:
    return f"Check: this gives {_inline(answer)}, which matches the correct answer."


def final_line(answer: str) -> str:
    return FINAL_LINE.format(answer=_inline(answer))


def usable_wrong(attempts: Sequence[GradedAttempt]) -> list[GradedAttempt]:
    """The wrong or answerless attempts that were not cut off, one per distinct answer (the first):
    a trace that rejects the same answer twice teaches nothing new."""
    seen, kept = set(), []
    for attempt in attempts:
        key = None if attempt.answer is None else "".join(attempt.answer.split())
        if attempt.verdict in (Verdict.WRONG, Verdict.NO_ANSWER) and not attempt.truncated and key not in seen:
            seen.add(key)
            kept.append(attempt)
    return kept


def usable_right(attempts: Sequence[GradedAttempt]) -> list[GradedAttempt]:
    return [a for a in attempts if a.verdict is Verdict.CORRECT and not a.truncated]


def compose_trace(
    attempts: Sequence[GradedAttempt],
    answer: str,
    rng: random.Random,
    max_wrong: int = 2,
    reference: str | None = None,
) -> Trace | None:
    """A trace for a problem whose reference answer is `answer`: between 0 and `max_wrong` of its
    distinct wrong attempts (how many drawn uniformly from what there is, which ones at random),
    then a random right attempt, or `reference` (a reference solution) if none is right.
    None when there is neither."""
    if max_wrong < 0:
        raise ValueError(f"max_wrong must be >= 0, got {max_wrong}")
    right, wrong = usable_right(attempts), usable_wrong(attempts)
    reference = reference.strip() if reference else ""
    if not right and not reference:
        return None
    chosen = rng.sample(wrong, rng.randint(0, min(max_wrong, len(wrong))))
    blocks = [f"{unbox(a.text).strip()}\n{wrong_check(a.answer)}".lstrip() for a in chosen]
    if right:
        attempt = rng.choice(right)
        blocks.append(f"{unbox(attempt.text).strip()}\n{right_check(attempt.answer or answer)}".lstrip())
    else:
        blocks.append(f"{unbox(reference).strip()}\n{right_check(answer)}".lstrip())
    blocks.append(final_line(answer))
    return Trace("\n\n".join(blocks), len(chosen), from_reference=not right)
