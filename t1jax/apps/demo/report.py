"""The demo's report: results.json (every figure), report.md (tables, plots), PNGs, TensorBoard logs,
and a one-screen summary on the console."""

from __future__ import annotations

import pathlib
import shutil

from t1jax.eval import plot
from t1jax.eval.metrics import paired_difference
from t1jax.eval.report import markdown_table, write_json
from t1jax.eval.runner import metrics_row, scaling_rows
from t1jax.runtime.metrics import read_metrics

PASS1_LIFT_GOAL = 0.20  # issue goal: RL raises pass@1 by at least 20 points over SFT


def _metrics(run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return read_metrics(str(path)) if path.is_file() else []


def _curve(records: list[dict], key: str) -> list[list[float]]:
    """[[step, value], ...] of one metric, the last record per step winning (a resumed run repeats steps)."""
    points = {r["step"]: r[key] for r in records if key in r}
    return [[step, points[step]] for step in sorted(points)]


def _stage(summary: dict, records: list[dict]) -> dict:
    """A training stage's summary without its timing, with its loss curves."""
    return {
        **{k: v for k, v in summary.items() if k != "seconds"},
        "val_loss_curve": _curve(records, "val_loss"),
        "train_loss_curve": _curve(records, "loss"),
    }


def build_results(demo, sft: dict, rl: dict, evals: dict, scaling: dict, drills: dict | None = None) -> dict:
    sft_records, rl_records = _metrics(demo.sft_dir), _metrics(demo.rl_dir)
    curves = {k: v for k, v in scaling.items() if k != "seconds"}
    lift = evals["rl"]["pass@1"] - evals["sft"]["pass@1"]
    final_rl = curves[list(curves)[-1]]
    gains = {"sft": curves["SFT"]["gain"], "rl": final_rl["gain"]}
    stages = (("drills", drills), ("sft", sft), ("rl", rl), ("eval", evals), ("scaling", scaling))
    stage_seconds = {name: stage.get("seconds", 0.0) for name, stage in stages if stage is not None}
    return {
        "task": demo.config.rl.task,
        "config": demo.config.to_dict(),
        **({"drills": _stage(drills, _metrics(demo.drill_dir))} if drills is not None else {}),
        "sft": {**_stage(sft, sft_records), "run_dir": str(demo.sft_dir)},
        "rl": {
            **{k: v for k, v in rl.items() if k != "seconds"},
            "curves": {k: _curve(rl_records, k) for k in ("accuracy", "reward", "response_length", "entropy")},
        },
        "eval": {k: v for k, v in evals.items() if k != "seconds"},
        "scaling": {
            "budgets": curves["SFT"]["budgets"],
            "curves": curves,
            "gain": gains,
        },
        "goals": {
            "pass1_lift": lift,
            "pass1_lift_goal": PASS1_LIFT_GOAL,
            "pass1_lift_met": lift >= PASS1_LIFT_GOAL,
            "pass1_lift_interval": _paired(evals["sft"], evals["rl"], "correct_rate_by_problem"),
            "scaling_gain_rl_over_sft": gains["rl"] - gains["sft"],
            "scaling_gain_met": gains["rl"] > gains["sft"],
            "scaling_gain_interval": _paired(curves["SFT"], final_rl, "gain_by_problem"),
        },
        "timing": {**{f"{k}_s": v for k, v in stage_seconds.items()}, "total_s": sum(stage_seconds.values())},
    }


def _paired(before: dict, after: dict, key: str) -> dict | None:
    """The 95% interval of after - before over the test problems (None for stage files written
    before per-problem results were kept)."""
    if key not in before or key not in after:
        return None
    return paired_difference(before[key], after[key])


def _traces_drawn(ev: dict) -> str:
    n, temperature = ev.get("scaling_traces", 1), ev["scaling_temperature"]
    if n == 1:
        how = "greedy" if temperature == 0 else f"sampled (temperature {temperature:g})"
        return f"Each problem's one {how} reasoning trace is"
    return (
        f"Each problem's {n} reasoning traces, sampled at temperature {temperature:g}"
        " (accuracy: the share of traces answered right), are"
    )


def _sft_how(sft: dict) -> str:
    """How the SFT stage ended, or where its model came from (a finished run, `demo.sft_dir`)."""
    if "reused" in sft:
        return f"Reused the SFT run `{sft['reused']}` (`demo.sft_dir`)"
    how = "Stopped early, when the validation loss stopped improving," if sft.get("stopped_early") else "Ran all steps,"
    return f"{how} at step {sft.get('final_step', '—')}"


def _span(interval: dict) -> str:
    return f"{interval['low']:+.3f} to {interval['high']:+.3f}"


def _interval(interval: dict | None, of: str) -> str:
    return "" if interval is None else f"; {of}: 95% interval over problems {_span(interval)}"


def write_plots(report_dir: pathlib.Path, results: dict) -> dict[str, str]:
    s, r = results["scaling"], results["rl"]["curves"]
    curves = {name: c["accuracy"] for name, c in s["curves"].items()}
    files = {
        "scaling": plot.plot_curves(
            report_dir / "scaling.png", s["budgets"], curves, log2_x=True, ylim=(0, 1),
            title="Inference scaling: accuracy vs reasoning budget", xlabel="reasoning budget (tokens)",
            ylabel="accuracy (forced answer)",
        ),
        "sft_loss": plot.plot_series(
            report_dir / "sft_loss.png",
            {"train": _xy(results["sft"]["train_loss_curve"]), "validation": _xy(results["sft"]["val_loss_curve"])},
            title="SFT loss", xlabel="step", ylabel="loss (response tokens)",
        ),
        "rl_accuracy": plot.plot_series(
            report_dir / "rl_accuracy.png", {"sampled accuracy": _xy(r["accuracy"]), "reward": _xy(r["reward"])},
            title="RL: accuracy and reward of the sampled groups", xlabel="RL step", ylabel="mean over samples",
        ),
        "rl_length": plot.plot_series(
            report_dir / "rl_length.png", {"response length": _xy(r["response_length"])},
            title="RL: mean response length", xlabel="RL step", ylabel="tokens",
        ),
    }  # fmt: skip
    return {k: pathlib.Path(v).name for k, v in files.items()}


def _xy(points: list[list[float]]) -> tuple[list[float], list[float]]:
    return [p[0] for p in points], [p[1] for p in points]


def copy_tensorboard(demo, report_dir: pathlib.Path) -> None:
    for name, run_dir in (("drills", demo.drill_dir), ("sft", demo.sft_dir), ("rl", demo.rl_dir)):
        if (run_dir / "tensorboard").is_dir():
            shutil.copytree(run_dir / "tensorboard", report_dir / "tensorboard" / name, dirs_exist_ok=True)


def markdown(results: dict, plots: dict[str, str]) -> str:
    e, g, s, t = results["eval"], results["goals"], results["sft"], results["timing"]
    n = e["sft"]["num_samples"]
    lines = [
        f"# T1 demo on `{results['task']}`",
        "",
        "## Held-out test split",
        "",
        f"{e['sft']['num_problems']} problems, {n} samples each at temperature "
        f"{results['config']['eval']['sampling']['temperature']}; pass@1 is the mean correctness of the samples.",
        "",
        markdown_table([metrics_row("SFT", e["sft"]), metrics_row("RL", e["rl"])]),
        "",
        f"- RL lift in pass@1: **{g['pass1_lift']:+.3f}** (goal >= +{g['pass1_lift_goal']:.2f}: "
        f"{'met' if g['pass1_lift_met'] else 'NOT met'}{_interval(g.get('pass1_lift_interval'), 'lift')})",
        f"- Inference-scaling gain (largest minus smallest budget): SFT {results['scaling']['gain']['sft']:+.3f}, "
        f"final RL {results['scaling']['gain']['rl']:+.3f} (goal, RL's larger: "
        f"{scaling_verdict(g).replace('not met', 'NOT met')}"
        f"{_interval(g.get('scaling_gain_interval'), 'the difference')})",
        *[f"- More RL: {line}" for line in _more_rl_lines(results)],
        "",
        "The intervals are paired over the test problems: they show how much of a difference the "
        "choice of problems and samples explains, not how much a retrained model would differ.",
        "",
        "## Inference scaling",
        "",
        f"{_traces_drawn(results['config']['eval'])} cut after B tokens, the answer is forced with the suffix "
        "`Final answer:` and decoded greedily, and graded; no verifier.",
        "",
        markdown_table(scaling_rows(results["scaling"]["curves"])),
        "",
        f"![inference scaling]({plots['scaling']})",
        "",
        *_drill_lines(results.get("drills")),
        "## SFT",
        "",
        f"{_sft_how(s)}; validation loss by step: {_by_step(s['val_loss_curve'])}",
        "",
        f"![SFT loss]({plots['sft_loss']})",
        "",
        "## RL",
        "",
        f"![RL accuracy]({plots['rl_accuracy']})",
        "",
        f"![RL length]({plots['rl_length']})",
        "",
        "## Time",
        "",
        markdown_table([{k.removesuffix("_s"): f"{v / 60:.1f} min" for k, v in t.items()}]),
        "",
        "TensorBoard: `tensorboard --logdir tensorboard`.",
    ]
    return "\n".join(lines)


def _drill_lines(drills: dict | None) -> list[str]:
    if drills is None:
        return []
    return [
        "## Check drills",
        "",
        f"SFT on the checks' arithmetic alone for {drills.get('final_step', '—')} steps before the traces; "
        f"validation loss by step: {_by_step(drills['val_loss_curve'])}",
        "",
    ]


def _by_step(curve: list[list[float]]) -> str:
    return ", ".join(f"{int(step)}: {value:.3f}" for step, value in curve)


def summary_lines(results: dict, report_dir: pathlib.Path) -> list[str]:
    e, g = results["eval"], results["goals"]
    gains = results["scaling"]["gain"]
    return [
        "",
        f"T1 demo on {results['task']} ({e['sft']['num_problems']} held-out problems)",
        f"  pass@1     SFT {e['sft']['pass@1']:.3f}   RL {e['rl']['pass@1']:.3f}   "
        f"lift {g['pass1_lift']:+.3f} (goal +{g['pass1_lift_goal']:.2f}: "
        + ("met)" if g["pass1_lift_met"] else "not met)"),
        f"  scaling    gain SFT {gains['sft']:+.3f}   RL {gains['rl']:+.3f}   (goal RL > SFT: {scaling_verdict(g)})",
        *_interval_lines(g),
        *[f"  more RL    {line}" for line in _more_rl_lines(results)],
        f"  time       {results['timing']['total_s'] / 60:.1f} min",
        f"  report     {report_dir / 'report.md'}",
    ]


def scaling_verdict(goals: dict) -> str:
    """The scaling goal (RL's gain larger than SFT's), and whether the test problems' sampling alone could
    have made it so: "met" only where the paired interval of the difference lies above zero."""
    interval = goals.get("scaling_gain_interval")
    if not goals["scaling_gain_met"]:
        return "not met"
    if interval is not None and interval["low"] <= 0:
        return "met, but the difference's interval includes 0"
    return "met"


def _more_rl_lines(results: dict) -> list[str]:
    """Where the lift is short: how to give RL more steps from the same SFT model, without redoing SFT."""
    if results["goals"]["pass1_lift_met"]:
        return []
    return [
        f"add `--config.demo.sft_dir={results['sft']['run_dir']} --config.rl.num_steps=N "
        "--config.run.workdir=DIR` to this command for N RL steps from the same SFT model: the lift grows "
        "with RL steps (configs/demo_long.py runs 800)"
    ]


def _interval_lines(goals: dict) -> list[str]:
    lift, gain = goals.get("pass1_lift_interval"), goals.get("scaling_gain_interval")
    if lift is None or gain is None:
        return []
    return [f"  95% intervals over problems: lift {_span(lift)}, RL's gain minus SFT's {_span(gain)}"]


def write_report(demo, sft: dict, rl: dict, evals: dict, scaling: dict, drills: dict | None = None) -> dict:
    report_dir = demo.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    results = build_results(demo, sft, rl, evals, scaling, drills)
    plots = write_plots(report_dir, results)
    copy_tensorboard(demo, report_dir)
    (report_dir / "report.md").write_text(markdown(results, plots) + "\n")
    write_json(report_dir / "results.json", results)  # last: its presence means the demo finished
    print("\n".join(summary_lines(results, report_dir)))
    return results
