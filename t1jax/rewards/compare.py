"""Whether two sympy expressions are the same number or the same function.

Exact first, numeric second, never `simplify` (whose running time has no bound):
- two exact rationals are equal only if identical (0.5 == 1/2, but 0.333 != 1/3);
- other constants: their difference evaluated to 40 significant digits must vanish relative to
  their size (1 - 1/e vs 1 + 1/e differ; 1/sqrt(3) vs sqrt(3)/3 agree);
- expressions in variables: their difference is a constant that is 0, or expands to 0 (only
  when the expansion is provably small), or they agree at several random points to 20 digits.
Every value is evaluated with mpmath arithmetic, whose exponents are unbounded, so no float
overflow turns a huge wrong answer into an "equal" one.
"""

from __future__ import annotations

import math
import random

import mpmath
import sympy as sp

_DIGITS = 40
_RELATIVE_TOL = mpmath.mpf("1e-20")
_POINTS_WANTED = 5
_POINTS_TRIED = 12
_MAX_EXPANDED_TERMS = 400


def _numeric(expr: sp.Expr, point: dict | None = None) -> mpmath.mpc | None:
    """The value of `expr` (at `point`) as an mpc, or None if it is undefined or infinite there."""
    value = expr.evalf(_DIGITS, subs=point) if point else expr.evalf(_DIGITS)
    parts = []
    for part in value.as_real_imag():
        if part.is_Float and part._prec < 10:  # evalf's marker for "zero to all digits it tried"
            parts.append(mpmath.mpf(0))
        elif part.is_Number and part.is_finite:
            parts.append(mpmath.mpf(sp.Float(part, _DIGITS)._mpf_))
        else:
            return None
    return mpmath.mpc(*parts)


def _close(a: mpmath.mpc, b: mpmath.mpc) -> bool:
    with mpmath.workdps(_DIGITS):
        return abs(a - b) <= _RELATIVE_TOL * max(abs(a), abs(b))


def _expanded_terms(expr: sp.Basic) -> int:
    """An upper bound on the number of terms of expand(expr), without expanding."""
    if isinstance(expr, sp.Add):
        return sum(_expanded_terms(a) for a in expr.args)
    if isinstance(expr, sp.Mul):
        return math.prod(min(_expanded_terms(a), 10**6) for a in expr.args)
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and expr.exp > 1:
        k = _expanded_terms(expr.base)
        return math.comb(k + int(expr.exp) - 1, int(expr.exp)) if k > 1 and expr.exp < 100 else k * 10**6
    return 1


def _constants_equal(a: sp.Expr, b: sp.Expr) -> bool:
    difference = _numeric(a - b)
    if difference is None:
        return False
    if difference == 0:
        return True
    va, vb = _numeric(a), _numeric(b)
    if va is None or vb is None:
        return False
    with mpmath.workdps(_DIGITS):
        return abs(difference) <= _RELATIVE_TOL * max(abs(va), abs(vb))


def _sample_points(symbols: list[sp.Symbol], count: int, seed: str):
    """Random points with coordinates in [0.25, 2.75]: positive, so sqrt(x) and log(x) are real."""
    rng = random.Random(seed)  # fixed per variable set: grading is deterministic
    for _ in range(count):
        yield {s: sp.Float(rng.uniform(0.25, 2.75), _DIGITS) for s in symbols}


def _functions_equal(a: sp.Expr, b: sp.Expr, symbols: list[sp.Symbol]) -> bool:
    difference = a - b
    if not difference.free_symbols:  # x vs x + 10^-30: the difference alone decides, exactly
        return difference == 0 or (not difference.is_Rational and _constants_equal(difference, sp.S.Zero))
    if _expanded_terms(difference) <= _MAX_EXPANDED_TERMS and sp.expand(difference) == 0:
        return True
    agreed = 0
    for point in _sample_points(symbols, _POINTS_TRIED, ",".join(s.name for s in symbols)):
        va, vb = _numeric(a, point), _numeric(b, point)
        if va is None or vb is None:
            continue  # a pole or an undefined value at this point: try another
        if not _close(va, vb):
            return False
        agreed += 1
        if agreed == _POINTS_WANTED:
            return True
    return False


def scalars_equal(a: sp.Expr, b: sp.Expr) -> bool:
    """Whether two expressions denote the same number (or the same function of the same variables)."""
    if a == b:
        return True
    if a.has(sp.oo, -sp.oo, sp.zoo, sp.nan) or b.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        return False  # infinities are equal only when written the same way (handled above)
    if a.is_Rational and b.is_Rational:
        return False
    symbols = a.free_symbols | b.free_symbols  # \sin^2 x + \cos^2 x == 1 although only one side has x
    if not symbols:
        return _constants_equal(a, b)
    return _functions_equal(a, b, sorted(symbols, key=lambda s: s.name))


def proportional(f: sp.Expr, g: sp.Expr, positive: bool) -> bool:
    """Whether f = c*g for one constant c != 0 (c > 0 if `positive`): the test for two equations
    (or inequalities) f = 0 and g = 0 describing the same set, e.g. y = 2x + 3 and 2x - y + 3 = 0."""
    if f == 0 or g == 0:
        return f == g
    symbols = sorted(f.free_symbols | g.free_symbols, key=lambda s: s.name)
    if not symbols:
        return False  # two numeric statements like "2 = 3": not a relation between quantities
    ratio = None
    agreed = 0
    for point in _sample_points(symbols, _POINTS_TRIED, "ratio:" + ",".join(s.name for s in symbols)):
        vf, vg = _numeric(f, point), _numeric(g, point)
        if vf is None or vg is None or vg == 0:
            continue
        with mpmath.workdps(_DIGITS):
            r = vf / vg
        if r == 0 or (ratio is not None and not _close(r, ratio)):
            return False
        ratio = r
        agreed += 1
        if agreed == _POINTS_WANTED:
            break
    if agreed < _POINTS_WANTED:
        return False
    return not positive or (abs(ratio.imag) <= _RELATIVE_TOL * abs(ratio) and ratio.real > 0)
