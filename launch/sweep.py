"""Ablation sweeps of the demo: one `t1jax demo` run per ablation (or grid point), then one comparison table.

    python launch/sweep.py --dry_run                        # print the commands of the ablation runs
    python launch/sweep.py                                  # run them here, one after the other
    python launch/sweep.py --mode grid --only base,K=4      # pick runs of the full product
    python launch/sweep.py --extra --config.rl.num_steps=20 # extra overrides for every run
    python launch/sweep.py --launcher "launch/tpu_vm.sh run my-tpu us-central2-b {args}"  # print, run elsewhere
    python launch/sweep.py --slices tpu-a,tpu-b --zone us-east5-a  # on TPU slices, one run per slice at a time
    python launch/sweep.py --table                          # only tabulate what is there

The factors and levels live in configs/ablations.py. A run is named by what it changes from the baseline
("base", "K=4", "K=4_entropy=off"), so an ablation's runs are a subset of the grid's and a grid started in
the same --out reuses them. Each run writes to <out>/<name>; a run whose report/results.json exists is
skipped, so rerunning the same command resumes a sweep. The baseline runs first and the others reuse its SFT
run (demo.sft_dir=<out>/base/sft): SFT does not depend on the RL keys being ablated, so training it once is
the same experiment for a fraction of the time; with `--extra --config.demo.sft_dir=DIR` every run, the
baseline too, reuses DIR instead. Run from the repository root (paths are relative to it).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import math
import pathlib
import queue
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "configs" / "ablations.py"
TPU_SCRIPT = "launch/tpu_vm.sh"  # runs a command on every host of a TPU slice (--slices)
BASE_NAME = "base"
SFT_SUBDIR = "sft"  # where the demo keeps its SFT run inside run.workdir (the demo's layout)
MISSING = "—"
_LABEL = re.compile(r"[A-Za-z0-9.-]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._=-]+")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    levels: dict[str, str]  # factor -> level label
    overrides: dict[str, object]  # every ablated key -> its value in this run (baseline values included)
    changes: dict[str, object]  # the overrides that differ from the baseline run


def load_ablations(path: str | pathlib.Path = ABLATIONS):
    """The module of configs/ablations.py (FACTORS, BASELINE, BASE_CONFIG); configs/ is not a package."""
    spec = importlib.util.spec_from_file_location("t1jax_ablations", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_name(levels: Mapping[str, str], baseline: Mapping[str, str]) -> str:
    """'base', or the non-baseline levels in factor order, e.g. 'K=4_entropy=off'."""
    changed = [f"{factor}={label}" for factor, label in levels.items() if label != baseline[factor]]
    return "_".join(changed) or BASE_NAME


def build_runs(
    factors: Mapping[str, Mapping[str, Mapping[str, object]]],
    baseline: Mapping[str, str],
    mode: str = "ablation",
    only: Sequence[str] | None = None,
) -> list[Run]:
    """The runs of `mode` ("ablation": the baseline and one change at a time; "grid": every combination),
    baseline first, optionally restricted to the names in `only`."""
    _check_grid(factors, baseline)
    if mode == "ablation":
        combos = [dict(baseline)]
        for factor, levels in factors.items():
            combos += [{**baseline, factor: label} for label in levels if label != baseline[factor]]
    elif mode == "grid":
        combos = [dict(zip(factors, labels)) for labels in itertools.product(*factors.values())]
        combos.sort(key=lambda levels: levels != dict(baseline))  # stable: baseline first, the rest in order
    else:
        raise ValueError(f"unknown mode {mode!r} (ablation or grid)")
    base_values = _values(factors, baseline)
    runs = []
    for levels in combos:
        values = _values(factors, levels)
        changes = {key: value for key, value in values.items() if base_values.get(key, object()) != value}
        runs.append(Run(run_name(levels, baseline), levels, values, changes))
    if only:
        names = [run.name for run in runs]
        unknown = [name for name in only if name not in names]
        if unknown:
            raise ValueError(f"unknown run(s) {', '.join(unknown)}; the {mode} runs are: {', '.join(names)}")
        runs = [run for run in runs if run.name in only]
    return runs


def _values(factors, levels) -> dict[str, object]:
    values = {}
    for factor, label in levels.items():
        values.update(factors[factor][label])
    return values


def _check_grid(factors, baseline) -> None:
    if set(baseline) != set(factors):
        raise ValueError(f"BASELINE must name a level of every factor: factors {list(factors)}, got {list(baseline)}")
    for factor, levels in factors.items():
        for label in (factor, *levels):
            if not _LABEL.fullmatch(label):
                raise ValueError(f"factor/level {label!r} must use letters, digits, '.' and '-' (it names a run)")
        if baseline[factor] not in levels:
            raise ValueError(f"baseline level {baseline[factor]!r} of {factor} is not one of {list(levels)}")


def override_args(overrides: Mapping[str, object]) -> list[str]:
    """['--config.rl.penalties=False', ...]: t1jax parses each value by the type of its default."""
    return [f"--config.{key}={value}" for key, value in overrides.items()]


def normalize_extra(text: str) -> str:
    """'--config.a.b=v', 'config.a.b=v' and 'a.b=v' all become '--config.a.b=v'."""
    key, eq, value = text.removeprefix("--").removeprefix("config.").partition("=")
    if not eq or not key:
        raise ValueError(f"extra override {text!r} must look like --config.section.key=value")
    return f"--config.{key}={value}"


def workdir(out: str, name: str) -> str:
    return str(pathlib.Path(out) / name)


def results_path(out: str, name: str) -> pathlib.Path:
    return pathlib.Path(workdir(out, name), "report", "results.json")


def shared_sft_dir(out: str) -> str:
    return str(pathlib.Path(workdir(out, BASE_NAME), SFT_SUBDIR))


def sets_sft_dir(extras: Sequence[str]) -> bool:
    """Whether the extras name an SFT run for every run (--config.demo.sft_dir=...): then every run reuses
    it, and the baseline, which trains no SFT of its own, has none to share."""
    return any(e.partition("=")[0] == "--config.demo.sft_dir" for e in extras)


def command(
    run: Run,
    *,
    base_config: str,
    out: str,
    extras: Sequence[str] = (),
    sft_dir: str | None = None,
    prefix: Sequence[str] = (sys.executable, "-m", "t1jax"),
) -> list[str]:
    """The argv of one run. `prefix` replaces `python -m t1jax` (another interpreter, or a fake in tests).
    The run's own overrides come after the extras, so the ablated values always win."""
    argv = [*prefix, "demo", "--config", base_config, f"--config.run.workdir={workdir(out, run.name)}"]
    argv += list(extras) + override_args(run.overrides)
    if sft_dir is not None and run.name != BASE_NAME:
        argv.append(f"--config.demo.sft_dir={sft_dir}")
    return argv


def launcher_line(template: str, argv: Sequence[str], name: str) -> str:
    """Fills `template`: {cmd} is the command as one shell word (for `ssh --command {cmd}`), {args} the
    command as shell words (for scripts that take it as arguments, like launch/tpu_vm.sh run), {name} the
    run name. Plain replacement, so other braces in the template are left alone."""
    cmd = shlex.join(argv)
    return template.replace("{cmd}", shlex.quote(cmd)).replace("{args}", cmd).replace("{name}", shlex.quote(name))


def read_results(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _get(results, *keys):
    for key in keys:
        if not isinstance(results, Mapping) or key not in results:
            return None
        results = results[key]
    if isinstance(results, bool) or not isinstance(results, int | float) or not math.isfinite(results):
        return None
    return float(results)


def _fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def _interval(results, key: str) -> str:
    """' (low, high)': a paired 95% interval from results.json's goals, or nothing."""
    low, high = _get(results, "goals", key, "low"), _get(results, "goals", key, "high")
    return "" if low is None or high is None else f" ({low:+.3f}, {high:+.3f})"


def _minutes(seconds: float | None) -> str:
    return MISSING if seconds is None else f"{seconds / 60:.1f} min"


def table(runs: Sequence[Run], out: str) -> str:
    """A Markdown table of the runs' results.json (a missing file or field shows as '—'). The lift
    and the difference of scaling gains come with their paired 95% intervals where the demo
    wrote them: a sweep's differences between runs are only as real as these intervals allow."""
    lines = [
        "| run | overrides | SFT pass@1 | RL pass@1 | lift (95%) | scaling gain SFT | scaling gain RL "
        "| RL - SFT gain (95%) | total time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        r = read_results(results_path(out, run.name)) or {}
        changes = ", ".join(f"{key}={value}" for key, value in run.changes.items()) or "baseline"
        cells = [
            run.name,
            changes,
            _fmt(_get(r, "eval", "sft", "pass@1"), ".3f"),
            _fmt(_get(r, "eval", "rl", "pass@1"), ".3f"),
            _fmt(_get(r, "goals", "pass1_lift"), "+.3f") + _interval(r, "pass1_lift_interval"),
            _fmt(_get(r, "scaling", "gain", "sft"), ".3f"),
            _fmt(_get(r, "scaling", "gain", "rl"), ".3f"),
            _fmt(_get(r, "goals", "scaling_gain_rl_over_sft"), "+.3f") + _interval(r, "scaling_gain_interval"),
            _minutes(_get(r, "timing", "total_s")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(runs: Sequence[Run], out: str, header: str) -> str:
    text = f"{header}\n\n{table(runs, out)}"
    pathlib.Path(out).mkdir(parents=True, exist_ok=True)
    (pathlib.Path(out) / "sweep.md").write_text(text)
    return text


def run_all(
    runs: Sequence[Run],
    *,
    base_config: str,
    out: str,
    extras: Sequence[str] = (),
    share_sft: bool = True,
    prefix: Sequence[str] = (sys.executable, "-m", "t1jax"),
) -> list[str]:
    """Runs each run here, in order, streaming its output; returns the names of the failed runs.

    A run with a results.json is skipped. A run reuses the baseline's SFT only once the baseline has
    finished (its results.json exists); otherwise (baseline failed or not selected) it trains its own SFT.
    """
    failed = []
    for i, run in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {run.name}"
        if results_path(out, run.name).exists():
            print(f"=== {tag}: done already ({results_path(out, run.name)}), skipped", flush=True)
            continue
        base_done = results_path(out, BASE_NAME).exists()
        if share_sft and run.name != BASE_NAME and not base_done:
            print(f"=== {tag}: the baseline has not finished, so this run trains its own SFT", flush=True)
        sft_dir = shared_sft_dir(out) if share_sft and base_done else None
        argv = command(run, base_config=base_config, out=out, extras=extras, sft_dir=sft_dir, prefix=prefix)
        print(f"=== {tag}: {shlex.join(argv)}", flush=True)
        code = subprocess.run(argv).returncode
        if code != 0 or not results_path(out, run.name).exists():
            why = f"exit status {code}" if code != 0 else f"exited 0 but wrote no {results_path(out, run.name)}"
            print(f"=== {tag}: FAILED ({why}); going on with the next run", flush=True)
            failed.append(run.name)
    return failed


def slice_commands(slice_name: str, zone: str, argv: Sequence[str], out: str, name: str) -> list[list[str]]:
    """What runs one sweep run on a TPU slice (every host, until it ends) and brings its results back."""
    return [
        [TPU_SCRIPT, "run", slice_name, zone, *argv],
        [TPU_SCRIPT, "fetch", slice_name, zone, str(results_path(out, name))],
    ]


def run_on_slices(
    runs: Sequence[Run],
    slices: Sequence[str],
    zone: str,
    *,
    base_config: str,
    out: str,
    extras: Sequence[str] = (),
    prefix: Sequence[str] = ("python", "-m", "t1jax"),
) -> list[str]:
    """Runs the runs on TPU slices set up with launch/tpu_vm.sh, one run per slice at a time, every slice
    busy until the runs are done; returns the names of the failed runs. Each run's output goes to
    <out>/<name>.log here and its results.json is fetched into <out>/<name>, where `table` reads it. Runs
    train their own SFT (the slices share no disk); a run with a results.json here is skipped."""
    todo = queue.Queue()
    for run in runs:
        if results_path(out, run.name).exists():
            print(f"=== {run.name}: done already ({results_path(out, run.name)}), skipped", flush=True)
        else:
            todo.put(run)
    failed, lock = [], threading.Lock()

    def work(slice_name: str) -> None:
        while True:
            try:
                run = todo.get_nowait()
            except queue.Empty:
                return
            argv = command(run, base_config=base_config, out=out, extras=extras, prefix=prefix)
            log = pathlib.Path(out) / f"{run.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"=== {run.name}: on {slice_name}, output in {log}", flush=True)
            with log.open("w") as sink:
                codes = [subprocess.run(c, stdout=sink, stderr=subprocess.STDOUT).returncode
                         for c in slice_commands(slice_name, zone, argv, out, run.name)]  # fmt: skip
            done = results_path(out, run.name).exists()
            print(f"=== {run.name}: {'done' if done else f'FAILED (exit statuses {codes}; see {log})'}", flush=True)
            if not done:
                with lock:
                    failed.append(run.name)

    threads = [threading.Thread(target=work, args=(s,)) for s in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [run.name for run in runs if run.name in failed]


def _check_configs(runs, base_config: str, out: str, extras: Sequence[str]) -> None:
    """Loads every run's config as the demo will (demo.sft_dir aside), so a typo stops the sweep before the
    baseline has trained for an hour rather than after."""
    from t1jax import config as config_lib
    from t1jax.data.tasks import check_tasks

    for run in runs:
        argv = command(run, base_config=base_config, out=out, extras=extras, prefix=())
        check_tasks(config_lib.load(base_config, argv[3:]))


def _expand_extra_args(argv: Sequence[str]) -> list[str]:
    """argparse refuses `--extra --config.x=v` (the value looks like an option): join it into one word."""
    argv, joined = list(argv), []
    while argv:
        arg = argv.pop(0)
        joined.append(f"--extra={argv.pop(0)}" if arg == "--extra" and argv else arg)
    return joined


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the docstring of launch/sweep.py for the layout."
    )
    parser.add_argument("--mode", choices=("ablation", "grid"), default="ablation", help="one change at a time, or all")
    parser.add_argument("--only", default="", help="comma-separated run names to keep (see --dry_run for names)")
    parser.add_argument("--out", default="runs/sweep", help="runs go to OUT/NAME; the table to OUT/sweep.md")
    parser.add_argument("--config", default=None, help="base config of every run (default: BASE_CONFIG of --ablations)")
    parser.add_argument("--ablations", default=str(ABLATIONS), help="file with FACTORS, BASELINE, BASE_CONFIG")
    parser.add_argument("--extra", action="append", default=[], help="override for every run, e.g. --config.a.b=v")
    parser.add_argument("--dry_run", action="store_true", help="print each run's command and exit")
    parser.add_argument("--launcher", default=None, help="print each command inside TEMPLATE ({cmd}, {args}, {name})")
    parser.add_argument("--python", default=None, help="interpreter (default: this one; 'python' with --launcher)")
    parser.add_argument("--no_share_sft", action="store_true", help="every run trains its own SFT")
    parser.add_argument("--table", action="store_true", help="only tabulate the existing results")
    parser.add_argument(
        "--slices", default="", help="comma-separated TPU slices (set up with launch/tpu_vm.sh) to run on, one run each"
    )
    parser.add_argument("--zone", default="", help="the slices' zone (with --slices)")
    args = parser.parse_args(_expand_extra_args(sys.argv[1:] if argv is None else argv))
    args.slices = [name.strip() for name in args.slices.split(",") if name.strip()]
    if args.slices and not args.zone:
        parser.error("--slices needs --zone")
    if args.slices and args.launcher:
        parser.error("--slices and --launcher are two ways to run elsewhere: pick one")
    try:
        args.extra = [normalize_extra(e) for e in args.extra]
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    grid = load_ablations(args.ablations)
    base_config = args.config or grid.BASE_CONFIG
    try:
        runs = build_runs(
            grid.FACTORS, grid.BASELINE, args.mode, [n.strip() for n in args.only.split(",") if n.strip()]
        )
    except ValueError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    ablated = {f"--config.{key}" for run in runs for key in run.overrides}
    clashes = [e for e in args.extra if e.partition("=")[0] in ablated]
    if clashes:
        print(f"sweep: error: {', '.join(clashes)} sets an ablated key; change it in {args.ablations}", file=sys.stderr)
        return 2
    remote = bool(args.launcher or args.slices)
    python = args.python or ("python" if remote else sys.executable)
    prefix = (python, "-m", "t1jax")
    share_sft = not args.no_share_sft and not sets_sft_dir(args.extra) and not args.slices
    header = f"Sweep ({args.mode}) of `{base_config}`" + (f" with `{' '.join(args.extra)}`" if args.extra else "")
    if share_sft:
        header += f"; runs after the baseline reuse its SFT ({shared_sft_dir(args.out)})"

    if args.table:
        print(write_table(runs, args.out, header), end="")
        return 0
    if args.slices and args.dry_run:
        for i, run in enumerate(runs):  # the first runs' slices; later ones go to whichever slice is free
            argv = command(run, base_config=base_config, out=args.out, extras=args.extra, prefix=prefix)
            for line in slice_commands(args.slices[i % len(args.slices)], args.zone, argv, args.out, run.name):
                print(shlex.join(line))
        return 0
    if args.dry_run or args.launcher:
        names = {run.name for run in runs}
        share = share_sft and (BASE_NAME in names or results_path(args.out, BASE_NAME).exists())
        sft_dir = shared_sft_dir(args.out) if share else None
        if args.launcher and share:
            print(
                f"note: the runs after the baseline reuse {sft_dir}: start them once the baseline's SFT has "
                "finished, on storage they share, or pass --no_share_sft",
                file=sys.stderr,
            )
        for run in runs:
            argv = command(
                run, base_config=base_config, out=args.out, extras=args.extra, sft_dir=sft_dir, prefix=prefix
            )
            print(launcher_line(args.launcher, argv, run.name) if args.launcher else shlex.join(argv))
        return 0

    from t1jax.errors import ConfigError

    try:
        _check_configs(runs, base_config, args.out, args.extra)
    except ConfigError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.slices:
            failed = run_on_slices(
                runs, args.slices, args.zone, base_config=base_config, out=args.out, extras=args.extra, prefix=prefix
            )
        else:
            failed = run_all(
                runs,
                base_config=base_config,
                out=args.out,
                extras=args.extra,
                share_sft=share_sft,
                prefix=prefix,
            )
    except KeyboardInterrupt:
        print("\nsweep: interrupted; rerun the same command to resume (finished runs are skipped)", file=sys.stderr)
        return 130
    print(write_table(runs, args.out, header), end="")
    if failed:
        print(f"sweep: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
