"""The two helpers every section's check uses: both raise ConfigError with the given message."""

from __future__ import annotations

import re

from t1jax.errors import ConfigError


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_regex(key: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"{key} must be a regular expression over parameter names: {pattern!r}: {e}") from None
