"""The LaTeX commands an answer may use, as parser methods: \\frac, \\sqrt, \\binom, constants,
Greek letters, floor/ceiling/absolute value, functions (\\sin^2 x, \\log_2 8, \\sin^{-1} x),
angle-bracket vectors and matrix environments. Any other command makes the answer unreadable.

TeX reads a one-token argument as one character (\\frac12 is 1/2, \\sqrt2 is sqrt(2)); that is
kept here, while a plain exponent takes the whole number (2^10 is 1024, as people mean it).
"""

from __future__ import annotations

import sympy as sp

from t1jax.rewards import safe_math as sm
from t1jax.rewards.answer_types import Bracketed, Matrix, Unordered
from t1jax.rewards.lexer import Token
from t1jax.rewards.limits import MAX_ITEMS, UnreadableAnswer

GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho "
    "sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
# Commands that can start an implicit factor ("2\sqrt{3}", "3\pi", "x\sin x").
FACTOR_COMMANDS = frozenset({"frac", "sqrt", "pi", "infty", "binom", "lfloor", "lceil", "lvert", "begin"})
_MATRICES = frozenset({"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"})


def as_expr(value) -> sp.Expr:
    if not isinstance(value, sp.Expr):
        raise UnreadableAnswer("a tuple, set, matrix or relation used inside arithmetic")
    return value


class CommandParsing:
    """Mixed into the parser (t1jax.rewards.parser), whose token helpers and grammar it uses."""

    def simple_fraction(self) -> tuple[int, int] | None:
        """If \\frac{p}{q} of integer literals follows (also \\frac12), consume it and return (p, q):
        after an integer it makes a mixed number."""
        i, digits, leftover = self.pos + 1, [], ""
        for _ in range(2):
            if leftover:
                digits.append(leftover[0])
                leftover = leftover[1:]
                continue
            tok = self.peek(i - self.pos)
            if tok == Token("op", "{"):
                inner, close = self.peek(i + 1 - self.pos), self.peek(i + 2 - self.pos)
                if not (inner.kind == "num" and inner.text.isdigit() and close == Token("op", "}")):
                    return None
                digits.append(inner.text)
                i += 3
            elif tok.kind == "num" and tok.text.isdigit():
                digits.append(tok.text[0])
                leftover = tok.text[1:]
                i += 1
            else:
                return None
        if leftover:
            return None
        self.pos = i
        return int(digits[0]), int(digits[1])

    def argument(self) -> sp.Expr:
        """One argument of \\frac, \\sqrt or \\binom: a {group} or a single token (\\frac12, \\frac\\pi2)."""
        tok = self.peek()
        if tok == Token("op", "{") or tok == Token("op", "("):  # sqrt(2) as plain text writes it
            return as_expr(self.primary())
        if tok.kind == "num":
            if not tok.text.isdigit():
                raise UnreadableAnswer("a decimal as a one-token argument")
            if len(tok.text) > 1:
                self.tokens[self.pos] = Token("num", tok.text[1:])  # \frac12: the 2 is the next argument
            else:
                self.pos += 1
            return sp.Integer(int(tok.text[0]))
        if tok.kind in ("letter", "cmd"):
            return as_expr(self.primary())
        raise UnreadableAnswer("missing argument")

    def command(self, name: str):
        if name == "frac":
            numerator = self.argument()
            return sm.div(numerator, self.argument())
        if name == "sqrt":
            index = None
            if self.accept("op", "["):
                with self.nested():
                    index = as_expr(self.expr())
                self.expect("op", "]")
            radicand = self.argument()
            return sm.power(radicand, sp.Rational(1, 2) if index is None else sm.div(sp.S.One, index))
        if name == "binom":
            n = self.argument()
            return sm.binomial(n, self.argument())
        if name == "pi":
            return sp.pi
        if name in ("infty", "infinity"):
            return sp.oo
        if name in GREEK:
            return sp.Symbol(f"{name}_{self.subscript()}" if self.at("op", "_") else name)
        if name in ("emptyset", "varnothing"):
            return Unordered(())
        if name in ("lfloor", "lceil"):
            with self.nested():
                value = as_expr(self.expr())
            self.expect("cmd", "rfloor" if name == "lfloor" else "rceil")
            return sm.function("floor" if name == "lfloor" else "ceil", value)
        if name in ("lvert", "vert"):
            return self.absolute("cmd", "rvert" if name == "lvert" else "vert")
        if name == "langle":
            with self.nested():
                items = self.items(self.expr, unordered=False)
            self.expect("cmd", "rangle")
            return Bracketed("(", ")", tuple(items))
        if name == "begin":
            return self.matrix()
        if name in sm.FUNCTION_NAMES:
            return self.function(name)
        raise UnreadableAnswer(f"unsupported command \\{name}")

    def function(self, name: str) -> sp.Expr:
        exponent = None
        if self.accept("op", "^"):
            exponent = self.exponent()
            if exponent == -1 and name in sm.INVERSE:
                name, exponent = sm.INVERSE[name], None  # \sin^{-1} x is arcsin x
        base = None
        if name == "log" and self.accept("op", "_"):
            base = self.argument()
        with self.nested():
            if self.at("op", "("):
                arg = as_expr(self.primary())
            else:  # \sin 2x: the argument runs over the following implicit product
                arg = as_expr(self.power())
                while self.starts_factor() and not self.at("cmd", *sm.FUNCTION_NAMES):
                    arg = sm.mul(arg, as_expr(self.power()))
        value = sm.function(name, arg, base)
        return value if exponent is None else sm.power(value, exponent)

    def environment_name(self) -> str:
        self.expect("op", "{")
        letters = []
        while not self.accept("op", "}"):
            tok = self.next()
            if tok.kind != "letter" or len(letters) > 20:
                raise UnreadableAnswer("bad environment name")
            letters.append(tok.text)
        return "".join(letters)

    def matrix(self) -> Matrix:
        name = self.environment_name()
        if name not in _MATRICES:
            raise UnreadableAnswer(f"unsupported environment {name}")
        if name == "array":  # skip the column specification {cc}
            self.environment_name()
        rows, row, count = [], [], 0
        while not self.accept("cmd", "end"):
            if self.at("end"):
                raise UnreadableAnswer("unclosed matrix")
            with self.nested():
                row.append(as_expr(self.expr()))
            count += 1
            if count > MAX_ITEMS:
                raise UnreadableAnswer(f"a matrix with more than {MAX_ITEMS} entries")
            if self.accept("rowsep") or self.at("cmd", "end"):
                rows.append(tuple(row))
                row = []
            else:
                self.expect("op", "&")
        if self.environment_name() != name:
            raise UnreadableAnswer("mismatched \\end")
        if row or not rows or len({len(r) for r in rows}) != 1:
            raise UnreadableAnswer("a ragged or empty matrix")
        return Matrix(tuple(rows))
