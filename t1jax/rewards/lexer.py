"""Tokens of a normalized answer: numbers, single letters, LaTeX commands and operator characters.

The alphabet is closed: any character outside it (quotes, backticks, unicode letters, control
bytes) makes the answer unreadable. So no model text can reach the parser in a form that names a
Python attribute, a string literal or a call, and nothing downstream ever evaluates text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from t1jax.rewards.limits import UnreadableAnswer

# 12, 1.5, .5, 3., and scientific notation glued to the number: 1.5e3, 2E-4 (but "2e" is 2*e).
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_DIGITS = frozenset("0123456789")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_OPERATORS = set("+-*/^_()[]{},=<>!|&;")


class Token(NamedTuple):
    kind: str  # "num", "letter", "cmd", "op", "rowsep" (\\), "lset" (\{), "rset" (\}), "end"
    text: str


END = Token("end", "")


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with END; UnreadableAnswer on any character outside the alphabet."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER.match(text, i)
            tokens.append(Token("num", m.group(0)))
            i = m.end()
        elif ch.isascii() and ch.isalpha():
            tokens.append(Token("letter", ch))
            i += 1
        elif ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "\\":
                tokens.append(Token("rowsep", "\\\\"))
                i += 2
            elif nxt in ("{", "}"):
                tokens.append(Token("lset" if nxt == "{" else "rset", "\\" + nxt))
                i += 2
            elif nxt == "|":
                tokens.append(Token("op", "|"))
                i += 2
            elif (m := _COMMAND.match(text, i)) is not None:
                tokens.append(Token("cmd", m.group(1)))
                i = m.end()
            else:
                raise UnreadableAnswer(f"unknown escape {text[i : i + 2]!r}")
        elif ch in _OPERATORS:
            tokens.append(Token("op", "," if ch == ";" else ch))
            i += 1
        else:
            raise UnreadableAnswer(f"character {ch!r} is not part of a math answer")
    tokens.append(END)
    return tokens
