"""Size-checked constructors for sympy objects: the only way the parser builds values.

sympy evaluates eagerly (Integer(10)**10**10 starts computing a ten-billion-digit number), so
every operation that can grow a number exponentially (powers, factorials, binomials, literals in
scientific notation) checks the size of its result *before* asking sympy for it, and additions
and products check their (at most doubled) result after. Division by zero, 0^-1 and log(0) are
refused instead of becoming sympy's complex infinity.
"""

from __future__ import annotations

import math
from fractions import Fraction

import sympy as sp

from t1jax.rewards.limits import (
    MAX_EXPONENT,
    MAX_FACTORIAL,
    MAX_INT_BITS,
    MAX_ROOT_BASE_BITS,
    UnreadableAnswer,
)

_FUNCTIONS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "arccot": sp.acot, "arcsec": sp.asec,
    "arccsc": sp.acsc, "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "ln": sp.log, "log": sp.log,
    "floor": sp.floor, "ceil": sp.ceiling, "abs": sp.Abs,
}  # fmt: skip
INVERSE = {"sin": "arcsin", "cos": "arccos", "tan": "arctan", "cot": "arccot", "sec": "arcsec", "csc": "arccsc"}
FUNCTION_NAMES = frozenset(_FUNCTIONS) | {"exp"}


def _bits(r: sp.Rational) -> int:
    return max(int(r.p).bit_length(), int(r.q).bit_length())


def _check(expr: sp.Basic, depth: int = 3) -> sp.Basic:
    """Refuse undefined values and numbers over MAX_INT_BITS in the top `depth` levels of `expr`
    (deeper numbers were checked when their subexpression was built)."""
    if isinstance(expr, sp.Rational):
        if _bits(expr) > MAX_INT_BITS:
            raise UnreadableAnswer(f"a number with more than {MAX_INT_BITS} bits")
        return expr
    if expr in (sp.zoo, sp.nan) or isinstance(expr, sp.Float):
        raise UnreadableAnswer("an undefined value (division by zero or similar)")
    if depth > 0:
        for arg in expr.args:
            _check(arg, depth - 1)
    return expr


def _max_bits(expr: sp.Basic) -> int:
    return max((_bits(r) for r in expr.atoms(sp.Rational)), default=1)


def number(literal: str) -> sp.Rational:
    """The exact rational a decimal literal writes: "0.15" -> 3/20, "1.5e3" -> 1500."""
    mantissa, _, exponent = literal.lower().partition("e")
    power = int(exponent) if exponent else 0
    if abs(power) > MAX_EXPONENT:
        raise UnreadableAnswer(f"exponent {power} in {literal!r} is too large")
    value = Fraction(mantissa) * Fraction(10) ** power
    return _check(sp.Rational(value.numerator, value.denominator))


def add(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    return _check(sp.Add(a, b))


def mul(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    return _check(sp.Mul(a, b))


def neg(a: sp.Expr) -> sp.Expr:
    return _check(sp.Mul(sp.S.NegativeOne, a))


def div(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    if b == 0:
        raise UnreadableAnswer("division by zero")
    return mul(a, power(b, sp.S.NegativeOne))


def _magnitude(value: sp.Expr) -> float:
    """|value| as a float for a constant expression (inf if it is too big for a float)."""
    approx = value.evalf(15)
    if not approx.is_number or approx.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise UnreadableAnswer("an undefined constant")
    size = abs(approx)
    try:
        return float(size)
    except (OverflowError, TypeError):
        return math.inf


def power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """base**exponent, refused when the result would hold a huge exact number or explode numerically."""
    if exponent.free_symbols:
        if any(p.exp.free_symbols for p in exponent.atoms(sp.Pow)) or exponent.has(sp.exp):
            raise UnreadableAnswer("a tower of powers with variables in the exponents")
        return _check(sp.Pow(base, exponent))
    if base in (sp.S.One, sp.S.Zero, sp.S.NegativeOne) and exponent.is_Integer:
        return _check(sp.Pow(base, exponent))
    size = abs(exponent) if exponent.is_Rational else _magnitude(exponent)
    if size > MAX_EXPONENT:
        raise UnreadableAnswer(f"an exponent larger than {MAX_EXPONENT}")
    if base.has(sp.oo, -sp.oo):
        raise UnreadableAnswer("a power of infinity")
    if _max_bits(base) * size > MAX_INT_BITS:
        raise UnreadableAnswer("a power with too large an exact result")
    if not base.free_symbols:
        scale = _magnitude(base)
        if scale == 0 and exponent.is_negative:
            raise UnreadableAnswer("division by zero")
        if scale == math.inf or (scale and abs(math.log2(scale)) * size > MAX_INT_BITS):
            raise UnreadableAnswer("a power with too large a value")
    if base.is_Rational and not exponent.is_Integer and _bits(base) > MAX_ROOT_BASE_BITS:
        raise UnreadableAnswer("a root of too large a number")
    return _check(sp.Pow(base, exponent))


def factorial(n: sp.Expr, double: bool = False) -> sp.Expr:
    """n! or n!!, exact for 0 <= n <= MAX_FACTORIAL, symbolic for a variable n, refused otherwise."""
    if n.free_symbols:
        return sp.factorial2(n) if double else sp.factorial(n)
    if not n.is_Integer or n < 0 or n > MAX_FACTORIAL:
        raise UnreadableAnswer(f"factorial of {n} (only integers 0..{MAX_FACTORIAL} are evaluated)")
    return sp.factorial2(n) if double else sp.Integer(math.factorial(int(n)))


def binomial(n: sp.Expr, k: sp.Expr) -> sp.Expr:
    """binom(n, k): exact for integers up to MAX_FACTORIAL, a polynomial for a variable n and a
    small integer k, symbolic for two plain variables; anything else (binom(log 2, i), ...) is
    refused, because sympy's reasoning about such objects can run without bound."""
    if n.is_Integer and k.is_Integer and abs(n) <= MAX_FACTORIAL and abs(k) <= MAX_FACTORIAL:
        return _check(sp.binomial(n, k))
    if n.free_symbols and k.is_Integer and 0 <= k <= 50:
        value = sp.Integer(1)
        for j in range(int(k)):
            value = mul(value, add(n, sp.Integer(-j)))
        return div(value, sp.Integer(math.factorial(int(k))))
    if isinstance(n, sp.Symbol) and isinstance(k, sp.Symbol):
        return sp.binomial(n, k)
    raise UnreadableAnswer(f"binomial({n}, {k}) is not evaluated")


def function(name: str, arg: sp.Expr, base: sp.Expr | None = None) -> sp.Expr:
    """A named function (sin, log, floor, ...) applied to `arg`; log may take a base."""
    if name == "exp":
        return power(sp.E, arg)
    if name not in _FUNCTIONS:
        raise UnreadableAnswer(f"unknown function {name}")
    if name in ("log", "ln") and (arg == 0 or base in (sp.S.Zero, sp.S.One)):
        raise UnreadableAnswer("logarithm of zero or to base 0/1")
    if not arg.free_symbols and arg.has(sp.oo, -sp.oo):
        raise UnreadableAnswer("a function of infinity")
    value = _FUNCTIONS[name](arg) if base is None else sp.log(arg, base)
    return _check(value)
