"""Loading and overriding configs.

A config is an `ml_collections.ConfigDict` from a Python file whose `get_config()` returns it
(see configs/). Every key must exist in `t1jax.config.base_config()`: a misspelt key is an
error naming the closest valid key, never a silently ignored flag.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
from collections.abc import Iterable, Mapping

import ml_collections

from t1jax.config.base import base_config, validate
from t1jax.errors import ConfigError


def load(path: str | None = None, overrides: Iterable[str] | Mapping[str, object] = (), default=None):
    """Returns the validated, locked config from `path` (None: `default()`, else the base) with `overrides`.

    `overrides` is either strings "model.num_layers=4" (as given on the command line, values
    parsed by the type of the default) or a mapping {"model.num_layers": 4}.
    """
    config = (default or base_config)() if path is None else _from_file(path)
    _check_against_schema(config, base_config(), source=path or "base config")
    items = overrides.items() if isinstance(overrides, Mapping) else map(_split_override, overrides)
    for dotted, value in items:
        set_value(config, dotted, value)
    validate(config)
    config.lock()
    return config


def _from_file(path: str) -> ml_collections.ConfigDict:
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"t1jax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"config file {path} defines no get_config()")
        config = module.get_config()
    except ConfigError:
        raise
    except Exception as e:  # the user's file: report where it broke, not our stack
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path} returned {type(config).__name__}, not a ConfigDict")
    return config


def _check_against_schema(config, schema, source: str, prefix: str = "") -> None:
    for key in config.keys():
        dotted = prefix + key
        if key not in schema:
            raise ConfigError(f"{source}: unknown key '{dotted}'{_suggest(key, schema, prefix)}")
        value, default = config[key], schema[key]
        if isinstance(default, ml_collections.ConfigDict):
            if not isinstance(value, ml_collections.ConfigDict):
                raise ConfigError(f"{source}: '{dotted}' must be a section, got {value!r}")
            _check_against_schema(value, default, source, dotted + ".")
        else:
            _check_type(dotted, value, default)


def _suggest(key: str, section, prefix: str) -> str:
    close = difflib.get_close_matches(key, list(section.keys()), n=1, cutoff=0.5)
    return f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(section.keys())}"


def _check_type(dotted: str, value, default) -> None:
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"'{dotted}' must be {expected.__name__}, got {value!r}")


def _split_override(text: str) -> tuple[str, str]:
    text = text.removeprefix("--").removeprefix("config.")
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like --config.section.key=value")
    dotted, value = text.split("=", 1)
    return dotted, value


def set_value(config, dotted: str, value) -> None:
    """Sets `config.<dotted>` to `value`; a string is parsed by the type of the default."""
    section, parts = config, dotted.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        prefix = prefix + "." if prefix else ""
        if not isinstance(section, ml_collections.ConfigDict) or part not in section:
            where = section if isinstance(section, ml_collections.ConfigDict) else {}
            raise ConfigError(f"unknown config key '{dotted}'{_suggest(part, where, prefix)}")
        if i < len(parts) - 1:
            section = section[part]
    default = section[parts[-1]]
    if isinstance(default, ml_collections.ConfigDict):
        raise ConfigError(f"'{dotted}' is a section; set one of its keys, e.g. '{dotted}.{next(iter(default.keys()))}'")
    if isinstance(value, str) and not isinstance(default, str):
        value = _parse(dotted, value, default)
    _check_type(dotted, value, default)
    with section.unlocked():
        section[parts[-1]] = float(value) if isinstance(default, float) else value


def _parse(dotted: str, text: str, default):
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError
        return type(default)(text)
    except ValueError:
        raise ConfigError(f"'{dotted}' must be {type(default).__name__}, could not parse {text!r}") from None


def with_overrides(config, overrides: Mapping[str, object]):
    """An unlocked copy of `config` with some keys changed (e.g. a stage's own workdir)."""
    copy = config.copy_and_resolve_references()
    for dotted, value in overrides.items():
        set_value(copy, dotted, value)
    return copy
