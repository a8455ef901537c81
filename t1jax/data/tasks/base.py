"""The interface every built-in reasoning task implements, and its fixed, never-overlapping splits.

A task knows four things: how to draw a problem (with difficulty knobs), how to show it to the
model, how to verify an answer exactly, and how a solver might go wrong (plausible mistakes and
the written-out check that exposes them), which the trace synthesizer turns into
trial-and-error chains of thought.

Splits are a property of the problem, not of the seed: a problem's split is read off a stable
hash of its canonical form, so no seed, knob setting or machine can put a test problem into the
training set.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
import random
from typing import Any, ClassVar

from t1jax.errors import ConfigError

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def stable_digest(text: str) -> str:
    """sha256 hex digest: identical on every machine and Python run (unlike the built-in hash)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if set(fractions) != set(SPLITS):
        raise ConfigError(f"split fractions must name exactly {', '.join(SPLITS)}; got {', '.join(fractions)}")
    if any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise ConfigError(f"split fractions must be non-negative and sum to 1; got {fractions}")
    return dict(fractions)


class Task(abc.ABC):
    """A generator + verifier + mistake model for one kind of problem.

    Problems are plain dicts: {"id", "task", "problem" (text shown to the model), "answer"
    (canonical string), ...structured fields the verifier needs}.
    """

    name: ClassVar[str]
    Knobs: ClassVar[type]  # a frozen dataclass of difficulty knobs, defaults sized for a tiny model

    def __init__(self, knobs: Any = None, split_fractions: dict[str, float] | None = None):
        self.knobs = self.Knobs() if knobs is None else knobs
        if not isinstance(self.knobs, self.Knobs):
            raise ConfigError(f"{self.name}: knobs must be a {self.Knobs.__name__}, got {type(knobs).__name__}")
        self.split_fractions = _check_fractions(split_fractions or DEFAULT_SPLIT_FRACTIONS)

    @classmethod
    def with_knobs(cls, **overrides: Any) -> Task:
        """The task with some knobs changed; a misspelled knob is an error that lists the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls.Knobs)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ConfigError(f"{cls.name}: unknown knob(s) {', '.join(unknown)}; valid knobs: {', '.join(valid)}")
        return cls(cls.Knobs(**overrides))

    # --- what each task implements -------------------------------------------------------

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> dict | None:
        """One candidate problem's fields (without id/task), or None if this draw is rejected."""

    @abc.abstractmethod
    def canonical_key(self, problem: dict) -> str:
        """A string equal for two problems exactly when they are the same problem."""

    @abc.abstractmethod
    def prompt(self, problem: dict) -> str:
        """The text the model sees; ends with a newline."""

    @abc.abstractmethod
    def verify(self, problem: dict, answer_text: str) -> bool:
        """Whether `answer_text` solves `problem`; exact, and never evaluates model text as code."""

    @abc.abstractmethod
    def correct_attempt(self, problem: dict) -> str:
        """An attempt (as written after "Try: ") that verifies."""

    @abc.abstractmethod
    def wrong_attempts(self, problem: dict, rng: random.Random, n: int) -> list[str]:
        """Up to `n` distinct plausible mistakes, each of which fails `verify`."""

    @abc.abstractmethod
    def check(self, problem: dict, attempt: str) -> tuple[str, str | None]:
        """(the check written out, e.g. "3+5=8, 8*2=16, target 18", the reason it is wrong or None)."""

    def drill(self, problem: dict, attempt: str) -> str | None:
        """The computation inside `attempt`'s check as a line that needs no context, e.g. "2*5+3 = 13"
        (see t1jax/data/drills.py); None when there is none (the default: a check that reads the
        problem, like following edges of a graph, has nothing to drill)."""
        return None

    # --- shared machinery ----------------------------------------------------------------

    def split_of(self, problem: dict) -> str:
        """The split a problem belongs to: a pure function of its canonical form and the fractions."""
        digest = stable_digest(f"{self.name}:{self.canonical_key(problem)}")
        u = int(digest[:16], 16) / 16**16
        edge = 0.0
        for split in SPLITS:
            edge += self.split_fractions[split]
            if u < edge:
                return split
        return SPLITS[-1]  # u within rounding of 1.0

    def generate(self, split: str, n: int, seed: int) -> list[dict]:
        """`n` distinct problems of `split`, the same ones for the same (knobs, split, seed)."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
        if n > 0 and self.split_fractions[split] == 0:
            raise ConfigError(f"{self.name}: split '{split}' has fraction 0, so it holds no problems")
        # A string seed goes through sha512 in `random`, so the stream is stable across runs.
        rng = random.Random(f"{self.name}/{split}/{seed}")
        problems: list[dict] = []
        seen: set[str] = set()
        budget = 1000 + 200 * n  # enough for any sane knobs; guards against tiny problem spaces
        while len(problems) < n:
            if budget == 0:
                raise ConfigError(
                    f"{self.name}: found only {len(problems)} distinct '{split}' problems of {n} requested; "
                    f"the problem space of knobs {self.knobs} is too small"
                )
            budget -= 1
            fields = self.sample(rng)
            if fields is None:
                continue
            key = self.canonical_key(fields)
            if key in seen or self.split_of(fields) != split:
                continue
            seen.add(key)
            problems.append({"id": f"{self.name}-{stable_digest(key)[:12]}", "task": self.name, **fields})
        return problems
