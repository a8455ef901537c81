"""`t1jax <command> [--config FILE] [--config.section.key=value ...]`."""

from __future__ import annotations

import json
import sys

from t1jax import config as config_lib
from t1jax.errors import T1jaxError

USAGE = """usage: t1jax <command> [--config FILE] [--config.section.key=value ...]

commands:
  sft       supervised fine-tuning (default: the built-in arithmetic task)
  config    print the resolved config and exit

FILE is a Python file whose get_config() returns an ml_collections.ConfigDict (see configs/);
overrides are parsed by the type of the key's default, e.g. --config.model.num_layers=2.
"""


def parse_args(argv: list[str]) -> tuple[str, str | None, list[str]]:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0)
    command, path, overrides = argv[0], None, []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--config":
            path = next(rest, None)
            if path is None:
                raise config_lib.ConfigError("--config needs a file name")
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            overrides.append(arg)
        else:
            raise config_lib.ConfigError(f"unexpected argument '{arg}' (see t1jax --help)")
    return command, path, overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        command, path, overrides = parse_args(argv)
        if command not in COMMANDS:
            raise config_lib.ConfigError(f"unknown command '{command}' (commands: {', '.join(COMMANDS)})")
        config = config_lib.load(path, overrides)
        COMMANDS[command](config)
    except T1jaxError as e:
        print(f"t1jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("t1jax: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0


def _sft(config) -> None:
    from t1jax.train.sft import run_sft  # imports JAX: keep `t1jax --help` and config errors fast

    print(json.dumps(run_sft(config), indent=2))


def _config(config) -> None:
    print(config)


COMMANDS = {"sft": _sft, "config": _config}

if __name__ == "__main__":
    sys.exit(main())
