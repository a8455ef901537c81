"""A recursive-descent parser from answer tokens straight to sympy objects (no eval, no sympify).

Grammar (loosest first):
    answer   := item ("," item)*                    several items: an unordered list of solutions
    item     := relation ("\\cup" relation)*
    relation := expr (relop expr)*                   "x \\in S" reads as S
    expr     := term (("+" | "-" | "\\pm" | "\\mp") term)*
    term     := unary (("*" | "\\cdot" | "\\times" | "/" | "\\div" | <juxtaposition>) power)*
    unary    := ("-" | "+" | "\\pm")* power
    power    := postfix ("^" exponent)*             plain "2^10" is 2^{10}; towers are right-assoc.
    postfix  := primary ("!" | "!!")*
    primary  := number | letter | (...) | [...] | {...} | \\{...\\} | |...| | \\frac | \\sqrt | ...

Conventions (documented in the package docstring): "e" is Euler's number and "i" the imaginary
unit; "2\\frac{1}{2}" is the mixed number 5/2; a number's base subscript is dropped (204_5 reads
as 204); two numbers side by side ("2 3") are unreadable, not a product.
"""

from __future__ import annotations

import contextlib

import sympy as sp

from t1jax.rewards import safe_math as sm
from t1jax.rewards.answer_types import Bracketed, IntervalUnion, Matrix, Relation, Unordered, expand_signs, new_sign
from t1jax.rewards.latex_commands import FACTOR_COMMANDS, GREEK, CommandParsing, as_expr
from t1jax.rewards.lexer import END, Token, tokenize
from t1jax.rewards.limits import MAX_ITEMS, MAX_NESTING, UnreadableAnswer, check_length

_RELOPS = {"le": "<=", "leq": "<=", "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=",
           "lt": "<", "gt": ">", "ne": "!=", "neq": "!=", "in": "in"}  # fmt: skip
_PRODUCT = {"cdot": "*", "times": "*", "ast": "*", "div": "/"}


def _times(a, b):
    """a*b for numbers and expressions; a scalar may also multiply a matrix entrywise."""
    for scalar, matrix in ((a, b), (b, a)):
        if isinstance(matrix, Matrix) and isinstance(scalar, sp.Expr):
            return Matrix(tuple(tuple(sm.mul(scalar, x) for x in row) for row in matrix.rows))
    return sm.mul(as_expr(a), as_expr(b))


class _Parser(CommandParsing):
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.abs_depth = 0
        self.signs = 0

    # --- token helpers -----------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else END

    def next(self) -> Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def at(self, kind: str, *texts: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == kind and (not texts or tok.text in texts)

    def accept(self, kind: str, *texts: str) -> bool:
        if self.at(kind, *texts):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, *texts: str) -> None:
        if not self.accept(kind, *texts):
            raise UnreadableAnswer(f"expected {texts or kind}, found {self.peek().text or 'the end'!r}")

    @contextlib.contextmanager
    def nested(self):
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise UnreadableAnswer(f"nesting deeper than {MAX_NESTING}")
        try:
            yield
        finally:
            self.depth -= 1

    # --- lists, relations, sums, products ------------------------------------------------
    def answer(self):
        items = self.items(self.item)
        self.expect("end")
        return items[0] if len(items) == 1 else Unordered(tuple(items))

    def items(self, parse_one, unordered: bool = True) -> list:
        """Comma-separated items; in an unordered list each \\pm item becomes its alternatives,
        while in a tuple the signs stay (the whole tuple is expanded where it is an item)."""
        expand = expand_signs if unordered else (lambda value: [value])
        items = [*expand(parse_one())]
        while self.accept("op", ","):
            items += expand(parse_one())
            if len(items) > MAX_ITEMS:
                raise UnreadableAnswer(f"more than {MAX_ITEMS} items")
        return items

    def item(self):
        first = self.relation()
        if not self.at("cmd", "cup"):
            return first
        parts = [first]
        while self.accept("cmd", "cup"):
            parts.append(self.relation())
        if not all(isinstance(p, (Bracketed, Unordered)) for p in parts):
            raise UnreadableAnswer("\\cup joins intervals or sets only")
        return IntervalUnion(tuple(parts))

    def relop(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" and tok.text in "=<>":
            self.pos += 1
            if tok.text != "=" and self.accept("op", "="):
                return tok.text + "="
            return tok.text
        if tok.kind == "op" and tok.text == "!" and self.at("op", "=", ahead=1):
            self.pos += 2
            return "!="
        if tok.kind == "cmd" and tok.text in _RELOPS:
            self.pos += 1
            return _RELOPS[tok.text]
        return None

    def relation(self):
        sides, ops = [self.expr()], []
        while (op := self.relop()) is not None:
            ops.append(op)
            sides.append(self.expr())
        if not ops:
            return sides[0]
        if ops == ["in"]:
            return sides[1]  # "x \in [-2, 7]" answers [-2, 7]
        return Relation(tuple(ops), tuple(as_expr(s) for s in sides))

    def expr(self):
        with self.nested():
            value = self.term()
            while True:
                if self.accept("op", "+"):
                    value = sm.add(as_expr(value), as_expr(self.term()))
                elif self.accept("op", "-"):
                    value = sm.add(as_expr(value), sm.neg(as_expr(self.term())))
                elif self.at("cmd", "pm", "mp"):
                    sign = self.sign(self.next().text)
                    value = sm.add(as_expr(value), sm.mul(sign, as_expr(self.term())))
                else:
                    return value

    def sign(self, command: str) -> sp.Expr:
        sign = new_sign(self.signs)
        self.signs += 1
        return sign if command == "pm" else -sign

    def term(self):
        value = self.unary()
        while True:
            tok = self.peek()
            if (tok.kind == "op" and tok.text in "*/") or (tok.kind == "cmd" and tok.text in _PRODUCT):
                self.pos += 1
                right = self.unary()
                if "/" in (tok.text, _PRODUCT.get(tok.text)):
                    value = sm.div(as_expr(value), as_expr(right))
                else:
                    value = _times(value, right)
            elif self.starts_factor():
                value = _times(value, self.power())
            else:
                return value

    def starts_factor(self) -> bool:
        """Whether the next token can begin an implicit factor: 2x, 3\\sqrt{2}, x(x+1), 2|x|."""
        tok = self.peek()
        if tok.kind == "letter":
            return True
        if tok.kind == "cmd":
            return tok.text in FACTOR_COMMANDS or tok.text in GREEK or tok.text in sm.FUNCTION_NAMES
        return tok.kind == "op" and (tok.text in "({" or (tok.text == "|" and self.abs_depth == 0))

    def unary(self):
        factor = sp.S.One
        while True:
            if self.accept("op", "-"):
                factor = -factor
            elif self.accept("op", "+"):
                pass
            elif self.at("cmd", "pm", "mp"):
                factor = factor * self.sign(self.next().text)
            else:
                break
        value = self.power()
        return value if factor == 1 else _times(factor, value)

    def power(self):
        value = self.postfix()
        while self.accept("op", "^"):
            value = sm.power(as_expr(value), self.exponent())
        return value

    def exponent(self) -> sp.Expr:
        with self.nested():
            if self.at("op", "{"):
                return as_expr(self.primary())
            if self.accept("op", "-"):
                return sm.neg(self.exponent())
            self.accept("op", "+")
            base = as_expr(self.postfix())
            if self.accept("op", "^"):
                return sm.power(base, self.exponent())  # plain 2^3^2 is 2^(3^2)
            return base

    def postfix(self):
        value = self.primary()
        while self.at("op", "!") and not self.at("op", "=", ahead=1):
            self.pos += 1
            double = self.accept("op", "!")
            value = sm.factorial(as_expr(value), double=double)
        return value

    # --- primaries -------------------------------------------------------------------------
    def primary(self):
        tok = self.next()
        if tok.kind == "num":
            return self.number(tok.text)
        if tok.kind == "letter":
            if self.at("op", "_"):
                return sp.Symbol(f"{tok.text}_{self.subscript()}")
            return {"e": sp.E, "i": sp.I}.get(tok.text) or sp.Symbol(tok.text)
        if tok.kind == "op" and tok.text in "([":
            return self.bracketed(tok.text)
        if tok.kind == "op" and tok.text == "{":
            with self.nested():
                value = self.expr()
            self.expect("op", "}")
            return value
        if tok.kind == "op" and tok.text == "|":
            return self.absolute("op", "|")
        if tok.kind == "lset":
            if self.accept("rset"):
                return Unordered(())
            with self.nested():
                items = self.items(self.item)
            self.expect("rset")
            return Unordered(tuple(items))
        if tok.kind == "cmd":
            return self.command(tok.text)
        raise UnreadableAnswer(f"unexpected {tok.text or 'end of answer'!r}")

    def number(self, literal: str) -> sp.Expr:
        value = sm.number(literal)
        if self.at("op", "_"):
            self.subscript()  # 2516_8: the base is notation; the digits are compared as written
        elif literal.isdigit() and self.at("cmd", "frac") and (parts := self.simple_fraction()) is not None:
            numerator, denominator = parts
            if denominator == 0:
                raise UnreadableAnswer("division by zero")
            value = value + sp.Rational(numerator, denominator)  # mixed number 137\frac{1}{2}
        return value

    def subscript(self) -> str:
        self.expect("op", "_")
        if not self.accept("op", "{"):
            tok = self.next()
            if tok.kind not in ("num", "letter"):
                raise UnreadableAnswer("bad subscript")
            return tok.text
        parts = []
        while not self.accept("op", "}"):
            tok = self.next()
            if tok.kind not in ("num", "letter", "cmd") or len(parts) > 20:
                raise UnreadableAnswer("bad subscript")
            parts.append(tok.text)
        return "".join(parts)

    def bracketed(self, opening: str):
        with self.nested():
            items = self.items(self.expr, unordered=False)
        closing = self.next()
        if closing.kind != "op" or closing.text not in ")]":
            raise UnreadableAnswer("unclosed bracket")
        if len(items) == 1:
            if opening + closing.text in ("()", "[]"):
                return items[0]
            raise UnreadableAnswer("a single value in mismatched brackets")
        return Bracketed(opening, closing.text, tuple(items))

    def absolute(self, kind: str, closer: str):
        self.abs_depth += 1
        with self.nested():
            value = as_expr(self.expr())
        self.abs_depth -= 1
        self.expect(kind, closer)
        return sm.function("abs", value)


def parse_answer(text: str):
    """The value of a normalized answer: a sympy expression or one of the structures in answer_types.py."""
    check_length(text)
    return _Parser(tokenize(text)).answer()
