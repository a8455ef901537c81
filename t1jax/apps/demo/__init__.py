"""`t1jax demo`: the whole T1 recipe on the built-in task, measured, in one resumable command.

    [SFT on check drills (demo.drill_steps > 0)] -> tokenizer + synthesized trial-and-error
    traces -> SFT until the validation loss stops improving -> T1 RL from that checkpoint ->
    pass@1 / maj@k / pass@k of SFT and RL on the held-out test split -> inference-scaling curves
    of SFT and RL checkpoints -> report

Everything lands in run.workdir: drills/, sft/ and rl/ (checkpoints, metrics, TensorBoard),
stages/ (one JSON per finished stage, so an interrupted demo resumes where it stopped) and
report/ (report.md, results.json, PNGs, TensorBoard logs).
"""

from __future__ import annotations

import functools
import math
import pathlib
import sys

from t1jax.apps.demo.report import write_report
from t1jax.apps.demo.stages import StageLog
from t1jax.config import with_overrides
from t1jax.errors import ConfigError


class Demo:
    def __init__(self, config):
        self.config = config
        self.workdir = pathlib.Path(config.run.workdir)
        self.sft_dir = pathlib.Path(config.demo.sft_dir) if config.demo.sft_dir else self.workdir / "sft"
        self.drill_dir = self.workdir / "drills"
        self.rl_dir = self.workdir / "rl"
        self.report_dir = self.workdir / "report"
        self.stages = StageLog(self.workdir / "stages")

    def drills(self) -> dict:
        from t1jax.train.sft import run_sft

        overrides = {
            "run.workdir": str(self.drill_dir),
            "sft.source": "drills",
            "sft.num_steps": self.config.demo.drill_steps,
            "sft.eval_fraction": 0.01,  # of steps x batch documents: enough to track the loss
            "optim.learning_rate": self.config.demo.drill_learning_rate,
            "sft.batch_size": self.config.demo.drill_batch_size,
            "sft.pack": False,  # a drill document nearly fills its row: no two fit in one
            "sft.patience": 0,  # a fixed budget: what matters is the arithmetic learnt, not the loss
        }
        return run_sft(with_overrides(self.config, overrides))

    def sft(self) -> dict:
        from t1jax.train.sft import run_sft

        if self.config.demo.sft_dir:
            if not (self.sft_dir / "checkpoints").is_dir():
                raise ConfigError(f"demo.sft_dir={self.sft_dir} holds no SFT checkpoints")
            return {"reused": str(self.sft_dir)}
        overrides = {"run.workdir": str(self.sft_dir)}
        if self.config.demo.drill_steps:
            overrides["sft.init_from"] = str(self.drill_dir)
        return run_sft(with_overrides(self.config, overrides))

    def rl(self) -> dict:
        from t1jax.train.rl.loop import run_rl

        r, n = self.config.rl, self.config.demo.rl_checkpoints
        overrides = {
            "run.workdir": str(self.rl_dir),
            "rl.init_from": str(self.sft_dir),
            # Evenly spaced checkpoints, all kept: each gets an inference-scaling curve.
            "checkpoint.save_every": math.ceil(r.num_steps / n),
            "checkpoint.max_to_keep": n + 1,
        }
        return run_rl(with_overrides(self.config, overrides))

    def evaluate(self, evaluator) -> dict:
        from t1jax.eval.runner import write_samples

        results = {}
        for name, run_dir in (("sft", self.sft_dir), ("rl", self.rl_dir)):
            summary, records = evaluator.metrics(str(run_dir), label=f"eval {name}")
            write_samples(self.report_dir / f"samples_{name}.jsonl", records)
            # per problem, in the suite's order, for the paired comparison of SFT and RL
            rates = [sum(r["correct"]) / len(r["correct"]) for r in records]
            results[name] = {**summary, "correct_rate_by_problem": rates}
        return results

    def scaling(self, evaluator) -> dict:
        from t1jax.runtime.run_dir import checkpoint_steps

        curves = {"SFT": evaluator.scaling(str(self.sft_dir), label="scaling SFT")}
        steps = checkpoint_steps(str(self.rl_dir))
        total = self.config.rl.num_steps
        for step in steps[-self.config.demo.rl_checkpoints :]:
            name = f"RL {step}/{total}"
            curves[name] = {**evaluator.scaling(str(self.rl_dir), step, label=f"scaling {name}"), "step": step}
        return curves

    def run(self) -> dict:
        from t1jax.eval.runner import RunEvaluator

        with_drills = self.config.demo.drill_steps > 0 and not self.config.demo.sft_dir
        titles = [
            *(["SFT on check drills (the arithmetic of the checks)"] if with_drills else []),
            "SFT on synthesized trial-and-error traces",
            "T1 RL from the SFT checkpoint",
            "evaluation of SFT and RL",
            "inference-scaling curves",
            "report",
        ]
        title = iter(f"{i}/{len(titles)} {t}" for i, t in enumerate(titles, 1))
        drills = self.stages.run("drills", self.drills, next(title)) if with_drills else None
        sft = self.stages.run("sft", self.sft, next(title))
        rl = self.stages.run("rl", self.rl, next(title))
        evaluator = functools.cache(lambda: RunEvaluator(self.config, str(self.sft_dir)))  # only if a stage needs it
        evals = self.stages.run("eval", lambda: self.evaluate(evaluator()), next(title))
        scaling = self.stages.run("scaling", lambda: self.scaling(evaluator()), next(title))
        print(f"== {next(title)}", file=sys.stderr)
        return write_report(self, sft, rl, evals, scaling, drills)


def run_demo(config) -> dict:
    return Demo(config).run()
