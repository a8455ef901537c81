"""Linear equations in one unknown, a*x + b = d*x + e, with integer solutions.

The answer is a number ("5", "-3", "5.0", "3/2", "x = 5"), matched by a regular expression and
read with Fraction: model text is never evaluated.
"""

from __future__ import annotations

import dataclasses
import random
import re
from fractions import Fraction

from t1jax.data.tasks.base import Task
from t1jax.errors import ConfigError

_ANSWER = re.compile(r"(?:x\s*=\s*)?([+-]?(?:\d{1,12}(?:\.\d{1,12})?|\d{1,12}/\d{1,12}))")


def parse_number(text: str) -> Fraction | None:
    """The number in "5", "-3", "5.0", "3/2", "x = 5" (surrounding spaces allowed), else None."""
    match = _ANSWER.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return Fraction(match.group(1))
    except ZeroDivisionError:  # "3/0"
        return None


def _side(coefficient: int, constant: int) -> str:
    """How a person writes one side of the equation: "3x + 7", "x - 2", "-x", "12"."""
    if coefficient == 0:
        return str(constant)
    term = {1: "x", -1: "-x"}.get(coefficient, f"{coefficient}x")
    if constant == 0:
        return term
    return f"{term} {'+' if constant > 0 else '-'} {abs(constant)}"


def _substituted(coefficient: int, constant: int, x: Fraction) -> tuple[str, Fraction]:
    """("3*6+7", 25): the side with x replaced by its value, written out, and that side's value."""
    value = coefficient * x + constant
    if coefficient == 0:
        return str(constant), value
    shown = f"{coefficient}*({x})" if x < 0 else f"{coefficient}*{x}"
    if constant:
        shown += f"{'+' if constant > 0 else '-'}{abs(constant)}"
    return shown, value


@dataclasses.dataclass(frozen=True)
class LinearEquationKnobs:
    max_coefficient: int = 10  # a in 2..max_coefficient
    max_solution: int = 20  # x in 0..max_solution (or -max..max with `negative`)
    max_constant: int = 30  # b in 0..max_constant (or -max..max with `negative`)
    negative: bool = False  # harder: negative solutions and constants
    both_sides: bool = False  # harder: x on both sides, a*x + b = d*x + e

    def __post_init__(self):
        if self.max_coefficient < 2 or self.max_solution < 1 or self.max_constant < 1:
            raise ConfigError(f"linear_equation: need max_coefficient >= 2 and max_solution, max_constant >= 1; {self}")


class LinearEquation(Task):
    name = "linear_equation"
    Knobs = LinearEquationKnobs

    def sample(self, rng: random.Random) -> dict | None:
        k = self.knobs
        low_x, low_b = (-k.max_solution, -k.max_constant) if k.negative else (0, 0)
        a = rng.randint(2, k.max_coefficient)
        x = rng.randint(low_x, k.max_solution)
        b = rng.randint(low_b, k.max_constant)
        # Without `negative`, the x term on the right is the smaller one, so every number shown is >= 0.
        d = rng.randint(1, a - 1 if not k.negative else k.max_coefficient) if k.both_sides else 0
        if d == a:
            return None  # x would cancel
        e = (a - d) * x + b
        text = f"Solve for x: {_side(a, b)} = {_side(d, e)}"
        return {"problem": text, "answer": str(x), "a": a, "b": b, "d": d, "e": e, "solution": x}

    def canonical_key(self, problem: dict) -> str:
        return f"{problem['a']}x{problem['b']:+d}={problem['d']}x{problem['e']:+d}"

    def prompt(self, problem: dict) -> str:
        return problem["problem"] + "\n"

    def verify(self, problem: dict, answer_text: str) -> bool:
        return parse_number(answer_text) == problem["solution"]

    def correct_attempt(self, problem: dict) -> str:
        return f"x = {problem['solution']}"

    def check(self, problem: dict, attempt: str) -> tuple[str, str | None]:
        x = parse_number(attempt)
        if x is None:
            return f"{attempt} is not a number", "it is not a value for x"
        lv = problem["a"] * x + problem["b"]
        rv = problem["d"] * x + problem["e"]
        written = self.drill(problem, attempt) + (f", right side {rv}" if problem["d"] == 0 else "")
        return written, None if lv == rv else f"{lv} is {'more' if lv > rv else 'less'} than {rv}"

    def drill(self, problem: dict, attempt: str) -> str | None:
        """ "3*6+7 = 25" (and the right side, when x is on both): the substitution a check computes."""
        x = parse_number(attempt)
        if x is None:
            return None
        left, lv = _substituted(problem["a"], problem["b"], x)
        if problem["d"] == 0:
            return f"{left} = {lv}"
        right, rv = _substituted(problem["d"], problem["e"], x)
        return f"{left} = {lv}, {right} = {rv}"

    def wrong_attempts(self, problem: dict, rng: random.Random, n: int) -> list[str]:
        """Values a solver plausibly reaches: off by one, the sign of x flipped, b moved across without
        changing its sign, forgetting to divide by a, or (x on both sides) d*x moved with the wrong sign."""
        a, b, d, e, x = (problem[key] for key in ("a", "b", "d", "e", "solution"))
        candidates = [
            Fraction(x + 1),
            Fraction(x - 1),
            Fraction(-x),
            Fraction(e + b, a - d),  # a*x = e + b: b moved across with its sign kept
            Fraction(e - b),  # forgot to divide by the coefficient
            Fraction(e - b, a + d),  # d*x moved across with its sign kept
            Fraction(e, a - d) - b,  # divided before subtracting b
        ]
        values = []
        for value in candidates:
            if value.denominator == 1 and value != x and value not in values:
                values.append(value)
        return [f"x = {value}" for value in rng.sample(values, min(n, len(values)))]
