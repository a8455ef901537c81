"""Text clean-up of an extracted answer before it is parsed: what is notation, not mathematics.

Removed: math delimiters ($, \\(, \\[) and a whole-answer \\boxed, \\left/\\right and spacing
(\\, \\! \\; \\quad ~), degree signs, percent and dollar signs, unit words and \\text{...} units
("5 \\text{ cm}" -> "5"), a leading "f(x) =", a final period. Rewritten: \\dfrac/\\tfrac -> \\frac,
unicode math symbols and plain-text math (sqrt(2), 2pi, inf, 2**3) -> LaTeX, "and"/"or" between
answers -> ",", thousands separators ("1,000" and "32,\\!348" -> digits; "1,2" stays a list).
An answer that is only text ("\\text{Evelyn}") is compared as text, by `text_key`.

Everything here is a linear scan or a regular expression without nested quantifiers.
"""

from __future__ import annotations

import re

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": r"\times ", "\u00b7": r"\cdot ", "\u22c5": r"\cdot ",
    "\u00f7": r"\div ", "\u03c0": r"\pi ", "\u221e": r"\infty ", "\u221a": r"\sqrt ", "\u2264": r"\le ",
    "\u2265": r"\ge ", "\u2260": r"\ne ", "\u00b0": "", "\u00b1": r"\pm ", "\u2213": r"\mp ",
    "\u222a": r"\cup ", "\u2208": r"\in ", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
}  # fmt: skip
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

_DROP = re.compile(
    r"\\(?:left|right)(?![A-Za-z])\.?"
    r"|\\(?:[bB]igg?[lr]?|displaystyle|textstyle|quad|qquad|limits|nolimits|mathstrut)(?![A-Za-z])"
)
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])")
# Groups whose content is prose or a unit; their fate depends on what else the answer holds.
_WORD_GROUP = re.compile(r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|mbox|mathrm)\s*\{")
# Styling that never changes the value.
_STYLE_GROUP = re.compile(r"\\(?:mathbf|mathit|mathsf|boldsymbol|bm|mathcal|mathbb)\s*\{")
_UNIT_POWER = re.compile(r"\s*\^\s*(?:\{\s*\d\s*\}|\d)")
_CONNECTORS = {"and", "or", ",", "and/or", "or/and"}

_UNIT_WORDS = (
    "units?|cm|centimeters?|mm|millimeters?|meters?|metres?|km|kilometers?|inch|inches|feet|foot|ft|yards?|"
    "miles?|mph|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|dollars?|cents?|"
    "degrees?|pounds?|lbs?|ounces?|oz|kg|kilograms?|grams?|liters?|litres?|ml|gallons?|cups?|people|"
    "persons?|students?|times|ways|points?|percent|sq|square|cubic"
)
_TRAILING_UNIT = re.compile(
    rf"\s*\b(?:(?:square|sq\.?|cubic)\s+)?(?:{_UNIT_WORDS})\b\.?(?:{_UNIT_POWER.pattern})?\s*$", re.I
)
# Plain-text math as models also write it: sqrt(2), 2pi, log(x), inf, 2**3.
_PLAIN_NAMES = re.compile(
    r"(?<![\\A-Za-z])(sqrt|pi|infty|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sinh|cosh|tanh|log|ln|exp)(?![A-Za-z])"
)
_PLAIN_INFINITY = re.compile(r"(?<![\\A-Za-z])inf(?:inity)?(?![A-Za-z])")
# "f(x) =", "p(x)=", "f^{-1}(x) =" before an answer: function notation, not an equation.
_FUNCTION_LHS = re.compile(r"[A-Za-z](?:\^\{?-1\}?)?\s*\([A-Za-z0-9,\s]*\)\s*=(?!=)")
_WORD_CONNECTOR = re.compile(r"\s+(?:and|or)\s+", re.I)
_THOUSANDS = re.compile(r"((?:[A-Za-z]\s*=\s*)?[+-]?)(\d{1,3}(?:,\d{3})+)(\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?: \d{3})+")


def brace_partner(text: str, open_index: int) -> int | None:
    """Index of the '}' matching the '{' at open_index (escaped braces skipped), or None."""
    depth, i = 0, open_index
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _strip_wrappers(s: str) -> str:
    """Remove delimiters around the whole answer: $...$, \\(...\\), \\[...\\], \\boxed{...}."""
    while True:
        s = s.strip()
        before = s
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
        box = re.match(r"\\(?:boxed|fbox)\s*\{", s)
        if box and brace_partner(s, box.end() - 1) == len(s) - 1:
            s = s[box.end() : -1]
        if s == before:
            return s


def _unspace(s: str) -> str:
    """Drop LaTeX spacing commands and ~; ",\\!" between digit groups is a thousands separator."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "\\" and i + 1 < n:
            nxt = s[i + 1]
            if nxt in ",;:! ":
                i += 2
                if nxt == "!" and out and out[-1] == "," and len(out) > 1 and out[-2].isdigit():
                    j = i
                    while j < n and s[j] == " ":
                        j += 1
                    if re.match(r"\d{3}(?!\d)", s[j : j + 4]):
                        out.pop()  # "32,\!348": the comma groups digits
                        i = j
                continue
            out.append(s[i : i + 2])  # keep \\ and any other escape whole
            i += 2
            continue
        out.append(" " if ch == "~" else ch)
        i += 1
    return "".join(out).replace("{,}", ",")


def _groups(s: str, pattern: re.Pattern) -> list[tuple[int, int, str]]:
    """(start, end, content) of each non-nested `pattern{...}` group in s."""
    found, pos = [], 0
    while (m := pattern.search(s, pos)) is not None:
        close = brace_partner(s, m.end() - 1)
        if close is None:
            break
        found.append((m.start(), close + 1, s[m.end() : close]))
        pos = close + 1
    return found


def _splice(s: str, groups: list[tuple[int, int, str]], replace) -> str:
    out, pos = [], 0
    for start, end, content in groups:
        out.append(s[pos:start])
        text, skip_power = replace(content)
        out.append(text)
        pos = end
        if skip_power and (power := _UNIT_POWER.match(s, pos)):
            pos = power.end()  # "\mbox{ cm}^2": the square belongs to the unit
    out.append(s[pos:])
    return "".join(out)


def _resolve_words(s: str) -> str:
    """Text groups: kept as text if they are the whole answer, else units/prose dropped."""
    groups = _groups(s, _WORD_GROUP)
    if not groups:
        return s
    outside = _splice(s, groups, lambda c: ("", True))
    if not outside.strip(" .,;()"):
        return _splice(s, groups, lambda c: (c, False))

    def replace(content: str) -> tuple[str, bool]:
        content = content.strip()
        if content.lower() in _CONNECTORS:
            return ", ", False
        if re.fullmatch(r"[A-Za-z]|[\d.\s+\-*/()]+", content):
            return content, False  # \mathrm{e}, \text{5}: mathematics, not a unit
        return "", True

    return _splice(s, groups, replace)


def _light(text: str) -> str:
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], text)
    return _strip_wrappers(_unspace(s))


def normalize(text: str) -> str:
    """The answer as the parser should see it (see the module docstring for what changes)."""
    s = _DROP.sub("", _light(text))
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = _splice(s, _groups(s, _STYLE_GROUP), lambda c: ("{" + c + "}", False))
    s = re.sub(r"\\operatorname\s*\{\s*([A-Za-z]+)\s*\}", r"\\\1 ", s)
    s = _resolve_words(s)
    s = _WORD_CONNECTOR.sub(", ", s)
    s = _PLAIN_INFINITY.sub(r"\\infty ", _PLAIN_NAMES.sub(r"\\\1 ", s)).replace("**", "^")
    unit = _TRAILING_UNIT.search(s)
    if unit and re.search(r"[\d})\]]$|\\pi$", s[: unit.start()].rstrip()):
        s = s[: unit.start()]
    s = " ".join(s.split()).rstrip(" .;,").strip()
    if (lhs := _FUNCTION_LHS.match(s)) is not None and s[lhs.end() :].strip():
        s = s[lhs.end() :].strip()
    if (m := _THOUSANDS.fullmatch(s)) is not None:
        s = m.group(1) + m.group(2).replace(",", "") + (m.group(3) or "")
    elif _SPACED_THOUSANDS.fullmatch(s):
        s = s.replace(" ", "")
    return s


def text_key(text: str) -> str:
    """A comparison key for prose answers: text groups unwrapped, case, spaces and punctuation ignored."""
    s = _light(text)
    s = _splice(s, _groups(s, _WORD_GROUP), lambda c: (c, False))
    s = re.sub(r"^\s*(?:the|an|a)\s+", "", s, flags=re.I)  # "an ellipse" is "ellipse"
    return re.sub(r"[\s\\(){}.,;:!?'\"*]", "", s).lower()


def is_textual(gold: str) -> bool:
    """Whether a gold answer is prose ("Evelyn", "\\text{east}", "no solution"), not mathematics."""
    s = _light(gold)
    s = _splice(s, _groups(s, _WORD_GROUP), lambda c: (c, False)).strip().rstrip(".")
    return re.fullmatch(r"[A-Za-z][A-Za-z '\-]*", s) is not None and re.search(r"[A-Za-z]{3}", s) is not None
