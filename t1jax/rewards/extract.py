"""Finding the final answer in a response: the last \\boxed{...}, else an answer line, else "#### n".

Every scan here is linear in the response length (one pass to match braces, regular expressions
without nested quantifiers), because responses are untrusted and can be 100k characters long.
"""

from __future__ import annotations

import re

# \boxed or \fbox not followed by another letter (so \boxedfoo is not a box).
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# "answer:", "Final answer:", "**Final Answer:**", case-insensitive; the last one in the text wins.
_ANSWER_LINE = re.compile(r"answer\**[ \t]*:", re.IGNORECASE)
_HASHES = re.compile(r"####")
_TOKEN = re.compile(r"[^\s$]*")


def _brace_partners(text: str) -> dict[int, int]:
    """Index of each '{' -> index of its matching '}', ignoring escaped braces (\\{ and \\})."""
    partners: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character (\\{, \\}, \\\\)
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            partners[stack.pop()] = i
        i += 1
    return partners


def _last_box(text: str) -> str | None:
    """Content of the last complete, non-empty box; an unclosed box (a truncated response) is skipped."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    partners = _brace_partners(text)
    for start in reversed(starts):
        i = start
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            close = partners.get(i)
            content = text[i + 1 : close].strip() if close is not None else ""
        elif i > start:  # "\boxed 5": a single token after a space
            content = _TOKEN.match(text, i).group(0)
        else:
            content = ""
        if content:
            return content
    return None


def _clean_line(content: str) -> str:
    """An answer as written on a line: without markdown bold, math delimiters or a final period."""
    content = content.strip().strip("*").strip()
    if content.endswith(".") and not content.endswith(".."):
        content = content[:-1].rstrip()
    if len(content) >= 2 and content[0] == "$" and content[-1] == "$":
        content = content.strip("$").strip()
    return content


def _after_last(pattern: re.Pattern, text: str) -> str | None:
    """The rest of the line after the last match (or the next non-empty line if that is empty)."""
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - only the final match is wanted
        pass
    if last is None:
        return None
    rest = text[last.end() :].split("\n", 2)
    content = _clean_line(rest[0])
    if not content and len(rest) > 1:
        content = _clean_line(rest[1])
    return content or None


def extract_answer(text: str) -> str | None:
    """The final answer of a response, or None if it gives none.

    Order: the last \\boxed{...} / \\fbox{...} (nested braces handled; also "\\boxed 5"), else the
    last "answer:" line ("Final answer: x", as the built-in tasks write it; case-insensitive), else
    the last GSM8K-style "#### n" line.
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects a str, got {type(text).__name__}")
    boxed = _last_box(text)
    if boxed is not None:
        return boxed
    line = _after_last(_ANSWER_LINE, text)
    if line is not None:
        return line
    return _after_last(_HASHES, text)
