"""Countdown: combine the given numbers with + - * / to reach a target.

Answers are checked by a small recursive-descent parser (integers, + - * /, parentheses and
spaces, nothing else) and exact Fraction arithmetic, never by eval: the answer is model output.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from fractions import Fraction

from t1jax.data.tasks.base import Task
from t1jax.errors import ConfigError

MAX_CHARS = 200  # longer answers are rejected before parsing
MAX_DEPTH = 12  # parenthesis nesting
MAX_DIGITS = 6  # per integer literal, so no answer can ask for huge arithmetic

Tree = int | tuple  # a leaf, or (op, left, right)
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ExpressionError(ValueError):
    """The text is not an arithmetic expression this task accepts, or it divides by zero."""


def parse(text: str) -> Tree:
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"longer than {MAX_CHARS} characters")
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c in "0123456789":  # not str.isdigit, which also accepts superscripts and other scripts
            j = i
            while j < len(text) and text[j] in "0123456789":
                j += 1
            if j - i > MAX_DIGITS:
                raise ExpressionError("number too long")
            tokens.append(int(text[i:j]))
            i = j
        elif c in "+-*/()":
            tokens.append(c)
            i += 1
        elif c in " \t":
            i += 1
        else:
            raise ExpressionError(f"unexpected character {c!r}")
    tree, end = _expression(tokens, 0, 0)
    if end != len(tokens):
        raise ExpressionError("unexpected text after the expression")
    return tree


def _expression(tokens: list, pos: int, depth: int) -> tuple[Tree, int]:
    left, pos = _term(tokens, pos, depth)
    while pos < len(tokens) and tokens[pos] in ("+", "-"):
        right, end = _term(tokens, pos + 1, depth)
        left, pos = (tokens[pos], left, right), end
    return left, pos


def _term(tokens: list, pos: int, depth: int) -> tuple[Tree, int]:
    left, pos = _factor(tokens, pos, depth)
    while pos < len(tokens) and tokens[pos] in ("*", "/"):
        right, end = _factor(tokens, pos + 1, depth)
        left, pos = (tokens[pos], left, right), end
    return left, pos


def _factor(tokens: list, pos: int, depth: int) -> tuple[Tree, int]:
    if pos >= len(tokens):
        raise ExpressionError("expression ends too early")
    token = tokens[pos]
    if isinstance(token, int):
        return token, pos + 1
    if token != "(":
        raise ExpressionError(f"unexpected {token!r}")
    if depth >= MAX_DEPTH:
        raise ExpressionError("parentheses nested too deeply")
    inner, pos = _expression(tokens, pos + 1, depth + 1)
    if pos >= len(tokens) or tokens[pos] != ")":
        raise ExpressionError("missing ')'")
    return inner, pos + 1


def evaluate(tree: Tree, steps: list | None = None) -> Fraction:
    """The exact value; each operation is appended to `steps` as (a, op, b, result), innermost first."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = evaluate(left, steps), evaluate(right, steps)
    if op == "/" and b == 0:
        raise ExpressionError("division by zero")
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    else:
        value = a / b
    if steps is not None:
        steps.append((a, op, b, value))
    return value


def leaves(tree: Tree) -> list[int]:
    return [tree] if isinstance(tree, int) else leaves(tree[1]) + leaves(tree[2])


def render(tree: Tree) -> str:
    """Fewest parentheses such that parsing the text gives back the same value."""
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    lhs, rhs = render(left), render(right)
    if not isinstance(left, int) and _PRECEDENCE[left[0]] < _PRECEDENCE[op]:
        lhs = f"({lhs})"
    if not isinstance(right, int) and (
        _PRECEDENCE[right[0]] < _PRECEDENCE[op] or (_PRECEDENCE[right[0]] == _PRECEDENCE[op] and op in "-/")
    ):
        rhs = f"({rhs})"
    return f"{lhs}{op}{rhs}"


def _times(k: int) -> str:
    return {1: "once", 2: "twice"}.get(k, f"{k} times")


def misused_numbers(numbers: list[int], used: list[int]) -> list[str]:
    """Why `used` is not a sub-multiset of `numbers` ("3 is used twice but given once"); empty if it is."""
    given, counts = Counter(numbers), Counter(used)
    reasons = []
    for value, k in sorted(counts.items()):
        if given[value] == 0:
            reasons.append(f"{value} is not given")
        elif k > given[value]:
            reasons.append(f"{value} is used {_times(k)} but given {_times(given[value])}")
    return reasons


@dataclasses.dataclass(frozen=True)
class CountdownKnobs:
    min_numbers: int = 3
    max_numbers: int = 3  # 4 is harder, and ~20 tokens longer per attempt (p95 ~170 tokens, over seq_len 160)
    min_value: int = 1
    max_value: int = 20
    max_target: int = 100
    operations: str = "+-*/"

    def __post_init__(self):
        if not 2 <= self.min_numbers <= self.max_numbers <= 8:
            raise ConfigError(f"countdown: need 2 <= min_numbers <= max_numbers <= 8, got {self}")
        if not 1 <= self.min_value <= self.max_value < 10**MAX_DIGITS or self.max_target < 1:
            raise ConfigError(f"countdown: need 1 <= min_value <= max_value and max_target >= 1, got {self}")
        if not self.operations or set(self.operations) - set("+-*/"):
            raise ConfigError(f"countdown: operations must be a non-empty subset of '+-*/', got {self.operations!r}")


class Countdown(Task):
    name = "countdown"
    Knobs = CountdownKnobs

    def sample(self, rng: random.Random) -> dict | None:
        k = self.knobs
        numbers = [rng.randint(k.min_value, k.max_value) for _ in range(rng.randint(k.min_numbers, k.max_numbers))]
        for _ in range(20):  # a few random expressions over all the numbers; keep the first that fits
            tree = _random_tree(rng.sample(numbers, len(numbers)), rng, k.operations)
            steps: list = []
            try:
                target = evaluate(tree, steps)
            except ExpressionError:
                continue
            # Classic rules: every intermediate result is a positive integer, and the target is not given.
            if all(v.denominator == 1 and v > 0 for *_, v in steps) and target <= k.max_target:
                if int(target) not in numbers:
                    solution = render(tree)
                    text = f"Make {target} from {', '.join(map(str, numbers))} with + - * /, each at most once."
                    return {"problem": text, "answer": solution, "solution": solution,
                            "numbers": numbers, "target": int(target)}  # fmt: skip
        return None

    def canonical_key(self, problem: dict) -> str:
        return f"{','.join(map(str, sorted(problem['numbers'])))}={problem['target']}"

    def prompt(self, problem: dict) -> str:
        return problem["problem"] + "\n"

    def verify(self, problem: dict, answer_text: str) -> bool:
        """True iff the text is an expression over the given numbers (each at most as often as given)
        equal to the target; a trailing "= <target>" is allowed."""
        expression, equals, rhs = answer_text.partition("=")
        if equals and rhs.strip() != str(problem["target"]):
            return False
        try:
            tree = parse(expression)
            value = evaluate(tree)
        except ExpressionError:
            return False
        return value == problem["target"] and not misused_numbers(problem["numbers"], leaves(tree))

    def correct_attempt(self, problem: dict) -> str:
        return problem["solution"]

    def check(self, problem: dict, attempt: str) -> tuple[str, str | None]:
        try:
            tree = parse(attempt)
            value = evaluate(tree)
        except ExpressionError as e:
            return f"{attempt} cannot be evaluated", str(e)
        target = problem["target"]
        # One line, "(3+5)*2 = 16": writing each step out would cost ~10 tokens per attempt, which the
        # laptop-sized sequence length (~160 tokens) cannot spare.
        written = f"{render(tree)} = {value}"
        # A misused number is the reason when there is one; the check line already shows value vs target.
        reasons = misused_numbers(problem["numbers"], leaves(tree))
        if value != target and not reasons:
            reasons = [f"{value} is too {'small' if value < target else 'large'}"]
        return f"{written}, target {target}", " and ".join(reasons) or None

    def drill(self, problem: dict, attempt: str) -> str | None:
        """ "(3+5)*2 = 16": the expression a check evaluates, without the target."""
        try:
            tree = parse(attempt)
            return f"{render(tree)} = {evaluate(tree)}"
        except ExpressionError:
            return None

    def wrong_attempts(self, problem: dict, rng: random.Random, n: int) -> list[str]:
        """Mistakes a solver plausibly makes: a wrong operator, swapped operands of - or /, a number
        reused or misread, or a different expression that lands near the target."""
        if n <= 0:
            return []
        solution, numbers, target = parse(problem["solution"]), problem["numbers"], problem["target"]
        ops = self.knobs.operations
        kinds = [
            list(_edits(solution, ops, lambda v: [])),  # operator changed / operands swapped
            list(_edits(solution, "", lambda v: [u for u in numbers if u != v])),  # a number reused
            list(_edits(solution, "", lambda v: [u for u in (v - 1, v + 1) if u > 0])),  # a number misread
            [_random_tree(rng.sample(numbers, rng.randint(2, len(numbers))), rng, ops) for _ in range(20)],
        ]
        pools = []
        for trees in kinds:
            scored = {}
            for tree in trees:
                steps: list = []
                try:
                    value = evaluate(tree, steps)
                except ExpressionError:
                    continue
                # Integer arithmetic only (a clean check line), and it must be wrong.
                if all(v.denominator == 1 for *_, v in steps) and (
                    value != target or misused_numbers(numbers, leaves(tree))
                ):
                    scored[render(tree)] = abs(value - target)
            near = sorted(scored, key=lambda t: (scored[t], t))[:3]  # closest to the target are most tempting
            rng.shuffle(near)
            pools.append(near)
        rng.shuffle(pools)
        chosen: list[str] = []
        while len(chosen) < n and any(pools):  # round-robin over kinds, so one trace mixes mistake kinds
            for pool in pools:
                while pool and len(chosen) < n:
                    text = pool.pop()
                    if text not in chosen and not self.verify(problem, text):  # the verifier has the last word
                        chosen.append(text)
                        break
        return chosen


def _random_tree(numbers: list[int], rng: random.Random, ops: str) -> Tree:
    if len(numbers) == 1:
        return numbers[0]
    cut = rng.randint(1, len(numbers) - 1)
    return (rng.choice(ops), _random_tree(numbers[:cut], rng, ops), _random_tree(numbers[cut:], rng, ops))


def _edits(tree: Tree, ops: str, replacements):
    """Trees that differ from `tree` in one place: an operator changed to one of `ops`, the operands of
    a - or / swapped (only when `ops` is given), or a number v replaced by one of `replacements(v)`."""
    if isinstance(tree, int):
        yield from replacements(tree)
        return
    op, left, right = tree
    if ops:
        yield from ((other, left, right) for other in ops if other != op)
        if op in "-/":
            yield (op, right, left)
    yield from ((op, edit, right) for edit in _edits(left, ops, replacements))
    yield from ((op, left, edit) for edit in _edits(right, ops, replacements))
