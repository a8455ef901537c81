"""`is_equivalent(pred, gold)`: whether two final answers are mathematically the same.

Rules, beyond plain numeric/symbolic equality (see compare.py):
- tuples and intervals are ordered and their brackets must match: (2, 4) != [2, 4) != (4, 2);
- lists of solutions and sets are unordered: "1, -2" == "-2, 1" == "\\{1, -2\\}"; a one-element
  list or set equals its element; "3 \\pm \\sqrt{2}" is the list of its two values;
- unions of intervals compare as unordered lists of intervals;
- "x = 3" equals "3" (a variable alone on one side); two equations are equal if one is a nonzero
  multiple of the other (y = 2x + 3 and 2x - y + 3 = 0), inequalities if a positive multiple;
  "x > 5" equals the interval (5, \\infty) and "-2 \\le x \\le 7" equals [-2, 7];
- matrices compare entrywise; a one-column or one-row matrix equals the tuple of its entries;
- prose golds ("\\text{Evelyn}") compare as text, ignoring case, spaces and punctuation.
Percent and degree signs and units are notation (normalize.py): 50\\% == 50, 30^\\circ == 30,
but 50\\% != 0.5 and 30^\\circ != \\pi/6.
"""

from __future__ import annotations

import logging

import sympy as sp

from t1jax.rewards.answer_types import Bracketed, IntervalUnion, Matrix, Relation, Unordered, is_sign
from t1jax.rewards.compare import proportional, scalars_equal
from t1jax.rewards.limits import MAX_ANSWER_CHARS, UnreadableAnswer
from t1jax.rewards.normalize import is_textual, normalize, text_key
from t1jax.rewards.parser import parse_answer

log = logging.getLogger(__name__)
_FLIP = {">": "<", ">=": "<="}


def _single(value):
    while isinstance(value, Unordered) and len(value.items) == 1:
        value = value.items[0]
    return value


def _solved_for(relation: Relation) -> tuple[sp.Symbol, sp.Expr] | None:
    """(x, v) for "x = v" or "v = x" where x is a lone variable not in v."""
    if relation.ops != ("=",):
        return None
    left, right = relation.sides
    for var, value in ((left, right), (right, left)):
        if isinstance(var, sp.Symbol) and not is_sign(var) and var not in value.free_symbols:
            return var, value
    return None


def _oriented(relation: Relation) -> Relation:
    """The same relation written with < and <= only (a > b becomes b < a)."""
    if len(relation.ops) == 1 and relation.ops[0] in _FLIP:
        return Relation((_FLIP[relation.ops[0]],), relation.sides[::-1])
    return relation


def _as_interval(relation: Relation) -> Bracketed | None:
    """ "x > 5" -> (5, oo), "-2 <= x <= 7" -> [-2, 7]; None if the relation is not of that shape."""
    relation = _oriented(relation)
    ops, sides = relation.ops, relation.sides
    if not all(op in ("<", "<=") for op in ops) or len(ops) > 2:
        return None
    if len(ops) == 2:
        low, var, high = sides
        low_op, high_op = ops
    elif isinstance(sides[0], sp.Symbol):
        var, high, low, low_op, high_op = sides[0], sides[1], -sp.oo, "<", ops[0]
    else:
        low, var, high, low_op, high_op = sides[0], sides[1], sp.oo, ops[0], "<"
    if not isinstance(var, sp.Symbol) or low.free_symbols or high.free_symbols:
        return None
    return Bracketed("[" if low_op == "<=" else "(", "]" if high_op == "<=" else ")", (low, high))


def _relations_equal(pred, gold) -> bool:
    if isinstance(pred, Relation) and isinstance(gold, Relation):
        solved_pred, solved_gold = _solved_for(pred), _solved_for(gold)
        if solved_pred and solved_gold:
            return solved_pred[0] == solved_gold[0] and scalars_equal(solved_pred[1], solved_gold[1])
        pred, gold = _oriented(pred), _oriented(gold)
        if pred.ops != gold.ops:
            return False
        if len(pred.ops) == 1:
            f, g = pred.sides[0] - pred.sides[1], gold.sides[0] - gold.sides[1]
            return proportional(f, g, positive=pred.ops[0] in ("<", "<="))
        return all(scalars_equal(p, g) for p, g in zip(pred.sides, gold.sides))
    relation, other = (pred, gold) if isinstance(pred, Relation) else (gold, pred)
    solved = _solved_for(relation)
    if solved is not None and isinstance(other, sp.Expr):
        return scalars_equal(solved[1], other)
    interval = _as_interval(relation)
    return interval is not None and isinstance(other, Bracketed) and values_equal(interval, other)


def _match_unordered(preds: tuple, golds: tuple) -> bool:
    if len(preds) != len(golds):
        return False
    unused = list(golds)
    for p in preds:
        for i, g in enumerate(unused):
            if values_equal(p, g):
                del unused[i]
                break
        else:
            return False
    return True


def _vector(value) -> tuple | None:
    """The entries of a one-row or one-column matrix, or of a parenthesized tuple."""
    if isinstance(value, Matrix):
        if len(value.rows) == 1:
            return value.rows[0]
        if all(len(row) == 1 for row in value.rows):
            return tuple(row[0] for row in value.rows)
        return None
    if isinstance(value, Bracketed) and (value.open, value.close) == ("(", ")"):
        return value.items
    return None


def values_equal(pred, gold) -> bool:
    """Structural comparison of two parsed answers (see the module docstring)."""
    pred, gold = _single(pred), _single(gold)
    if isinstance(pred, sp.Expr) and isinstance(gold, sp.Expr):
        return scalars_equal(pred, gold)
    if isinstance(pred, Relation) or isinstance(gold, Relation):
        return _relations_equal(pred, gold)
    if isinstance(pred, Bracketed) and isinstance(gold, Bracketed):
        return (
            (pred.open, pred.close) == (gold.open, gold.close)
            and len(pred.items) == len(gold.items)
            and all(values_equal(p, g) for p, g in zip(pred.items, gold.items))
        )
    if isinstance(pred, Unordered) and isinstance(gold, Unordered):
        return _match_unordered(pred.items, gold.items)
    if isinstance(pred, IntervalUnion) and isinstance(gold, IntervalUnion):
        return _match_unordered(pred.parts, gold.parts)
    if isinstance(pred, Matrix) and isinstance(gold, Matrix):
        return len(pred.rows) == len(gold.rows) and all(
            len(p) == len(g) and all(values_equal(a, b) for a, b in zip(p, g)) for p, g in zip(pred.rows, gold.rows)
        )
    if isinstance(pred, Matrix) or isinstance(gold, Matrix):
        p, g = _vector(pred), _vector(gold)
        return p is not None and g is not None and len(p) == len(g) and all(map(values_equal, p, g))
    return False


def is_equivalent(pred: str, gold: str) -> bool:
    """Whether the final answer `pred` is mathematically the same as the reference `gold`.

    Never evaluates either text as code; any answer that cannot be read, or that asks for more
    than the limits in limits.py allow (huge powers, factorials, deep nesting, over
    MAX_ANSWER_CHARS characters), is simply not equivalent.
    """
    for name, value in (("pred", pred), ("gold", gold)):
        if not isinstance(value, str):
            raise TypeError(f"is_equivalent: {name} must be a str, got {type(value).__name__}")
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    if is_textual(gold):
        return text_key(pred) == text_key(gold)
    pred_text, gold_text = normalize(pred), normalize(gold)
    if not pred_text or not gold_text:
        return False
    if pred_text.replace(" ", "") == gold_text.replace(" ", ""):
        return True
    try:
        return values_equal(parse_answer(pred_text), parse_answer(gold_text))
    except UnreadableAnswer:
        return False
    except Exception as e:
        # sympy raises many things on odd but well-typed input (TypeError "cannot determine truth
        # value of Relational", even AttributeError from inside its cache): a property of this
        # answer, so "not shown equal" rather than a crashed RL step.
        log.debug("comparing %r with %r failed: %s: %s", pred_text, gold_text, type(e).__name__, e)
        return False
