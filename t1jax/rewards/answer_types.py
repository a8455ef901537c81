"""What a parsed answer can be besides one sympy expression: tuples and intervals, unordered
lists and sets, unions of intervals, (chains of) relations and matrices.

\\pm is parsed as a product with a sign symbol (a \\pm b -> a + s*b); `expand_signs` turns an
answer holding such symbols into the list of its alternatives (3 \\pm \\sqrt{2} -> {3 + sqrt 2,
3 - sqrt 2}), which then compares like any unordered list of solutions.
"""

from __future__ import annotations

import dataclasses
import itertools

import sympy as sp

from t1jax.rewards.limits import MAX_PM, UnreadableAnswer


@dataclasses.dataclass(frozen=True)
class Bracketed:
    """An ordered sequence with its brackets: a point or tuple "(1, 2)", an interval "(3, 4]"."""

    open: str
    close: str
    items: tuple


@dataclasses.dataclass(frozen=True)
class Unordered:
    """A set "\\{1, 2\\}" or a list of solutions "1, 2": the order does not matter."""

    items: tuple


@dataclasses.dataclass(frozen=True)
class IntervalUnion:
    """A union of intervals or sets: "(-\\infty, 2) \\cup (3, \\infty)"."""

    parts: tuple


@dataclasses.dataclass(frozen=True)
class Relation:
    """ "y = 2x + 3", "x > 5" or a chain "1 < x \\le 4": ops[i] relates sides[i] and sides[i+1]."""

    ops: tuple[str, ...]
    sides: tuple[sp.Expr, ...]


@dataclasses.dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple, ...]


Value = sp.Expr | Bracketed | Unordered | IntervalUnion | Relation | Matrix


def is_sign(symbol: sp.Basic) -> bool:
    return isinstance(symbol, sp.Symbol) and symbol.name.startswith("\u00b1")


def new_sign(index: int) -> sp.Symbol:
    """A fresh sign symbol; its name cannot come out of the tokenizer, so no answer can collide."""
    if index >= MAX_PM:
        raise UnreadableAnswer(f"more than {MAX_PM} \\pm signs")
    return sp.Symbol(f"\u00b1{index}")


def _signs(value) -> set[sp.Symbol]:
    if isinstance(value, sp.Basic):
        return {s for s in value.free_symbols if is_sign(s)}
    children = {
        Bracketed: lambda v: v.items,
        Unordered: lambda v: v.items,
        IntervalUnion: lambda v: v.parts,
        Relation: lambda v: v.sides,
        Matrix: lambda v: [x for row in v.rows for x in row],
    }[type(value)](value)
    return set().union(*(_signs(c) for c in children)) if children else set()


def _substitute(value, mapping: dict):
    if isinstance(value, sp.Basic):
        return value.xreplace(mapping)
    if isinstance(value, Bracketed):
        return Bracketed(value.open, value.close, tuple(_substitute(v, mapping) for v in value.items))
    if isinstance(value, Unordered):
        return Unordered(tuple(_substitute(v, mapping) for v in value.items))
    if isinstance(value, IntervalUnion):
        return IntervalUnion(tuple(_substitute(v, mapping) for v in value.parts))
    if isinstance(value, Relation):
        return Relation(value.ops, tuple(_substitute(v, mapping) for v in value.sides))
    return Matrix(tuple(tuple(_substitute(v, mapping) for v in row) for row in value.rows))


def expand_signs(value) -> list:
    """The alternatives of an answer with \\pm signs (each sign +1 or -1); [value] if it has none."""
    signs = sorted(_signs(value), key=lambda s: s.name)
    if not signs:
        return [value]
    return [
        _substitute(value, dict(zip(signs, map(sp.Integer, choice))))
        for choice in itertools.product((1, -1), repeat=len(signs))
    ]
