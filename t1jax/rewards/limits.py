"""The bounds every grading step runs under, and the error raised when an answer breaks one.

Model output is untrusted: a response can ask for 10^(10^10), 100000!, a 500-level nested
parenthesis or a 100k-character answer. Each limit below turns such a request into an ordinary
"wrong" verdict in microseconds instead of a hung or out-of-memory grader. The values are far
above anything a real competition answer needs (MATH500 answers stay below 200 characters and a
few hundred bits).
"""

from __future__ import annotations

from t1jax.errors import T1jaxError

# Longest answer (after extraction) that is parsed at all; a longer one is graded wrong.
MAX_ANSWER_CHARS = 1000
# Deepest nesting of groups, fractions, roots, powers and function calls in one answer.
MAX_NESTING = 40
# Largest exact integer (numerator or denominator) kept anywhere in an expression: 65,536 bits is
# about 19,700 decimal digits, enough for 5000! and for comparing 1/2004! with 1/2006!.
MAX_INT_BITS = 1 << 16
# Largest |exponent| of a constant power (2^10000 fine, 2^100000 refused); exponents that contain
# symbols are allowed, but not towers of them (x^{x^{x}}), whose numeric values explode.
MAX_EXPONENT = 10_000
# A non-integer power of an exact rational makes sympy look for perfect powers: keep bases small.
MAX_ROOT_BASE_BITS = 16_384
# Largest argument of n!, n!! and binom(n, k) that is evaluated exactly.
MAX_FACTORIAL = 5_000
# Most elements in one list, set, tuple or matrix (comparing lists is quadratic in their size).
MAX_ITEMS = 50
# Most \pm signs in one answer (each doubles the number of alternatives).
MAX_PM = 4


class UnreadableAnswer(T1jaxError, ValueError):
    """An answer that cannot be read as mathematics, or that exceeds one of the limits above.

    Grading turns it into "not equivalent": it is a property of the model's text, not a fault."""


def check_length(text: str) -> None:
    if len(text) > MAX_ANSWER_CHARS:
        raise UnreadableAnswer(f"answer of {len(text)} characters exceeds the limit of {MAX_ANSWER_CHARS}")
