"""Evaluating a trained run: the suite, the samplers and the outputs of `t1jax eval` (also the demo's)."""

from __future__ import annotations

import json
import pathlib

import jax

from t1jax import parallel
from t1jax.config import parse_budgets
from t1jax.data.chat import format_prompt, stop_ids
from t1jax.data.tasks import parse_knobs
from t1jax.errors import ConfigError
from t1jax.eval.evaluate import evaluate
from t1jax.eval.generation import ModelGenerator
from t1jax.eval.report import markdown_table, write_json
from t1jax.eval.scaling import scaling_curve, scaling_gain
from t1jax.eval.suites import BenchmarkSuite, Suite, TaskSuite
from t1jax.runtime.run_dir import check_run_dir, load_run, run_layout, run_tokenizer
from t1jax.sampling import Greedy, Sampler, strategy_for
from t1jax.sampling.strategies import Strategy

ANSWER_MARGIN = 16  # tokens of answer-forcing suffix room in the forced prompts


def suite_from_config(config) -> Suite:
    ev = config.eval
    if ev.suite:
        return BenchmarkSuite(ev.suite, ev.num_problems)
    if ev.num_problems < 1:
        raise ConfigError("eval.num_problems must be >= 1 for a built-in task")
    return TaskSuite(config.rl.task, ev.split, ev.num_problems, config.run.seed, parse_knobs(config.task_knobs))


class RunEvaluator:
    """Metrics and inference-scaling curves of any checkpoint of the runs that share the model and
    tokenizer of `run_dir` (e.g. an SFT run and the RL run started from it).

    Samplers are kept across checkpoints, so evaluating several checkpoints compiles each once."""

    def __init__(self, config, run_dir: str, suite: Suite | None = None):
        parallel.initialize(config.distributed)
        check_run_dir(run_dir, "--run")
        self.config, self.suite = config, suite or suite_from_config(config)
        self.tokenizer = run_tokenizer(run_dir, config.sft.tokenizer_path)
        self.budgets = parse_budgets(config.eval.budgets)
        self.prompt_format = config.data.prompt_format
        prompts = [format_prompt(self.tokenizer, p["prompt"], self.prompt_format) for p in self.suite.problems]
        prompt_lens = [len(p) for p in prompts]
        self.max_prompt_len = max(prompt_lens)
        self.layout = run_layout(run_dir, config)
        self._samplers: dict[tuple, Sampler] = {}

    def _generator(self, params, strategy: Strategy, num_samples: int, max_new_tokens: int, max_prompt_len: int,
                   label: str) -> ModelGenerator:  # fmt: skip
        key = (strategy, num_samples, max_new_tokens, max_prompt_len)
        if key not in self._samplers:
            self._samplers[key] = Sampler(
                self.layout.model_config, strategy, max_new_tokens, num_samples,
                stop_ids(self.tokenizer, self.prompt_format), self.tokenizer.pad_id, max_prompt_len, self.layout,
                self.config.sampling.stage_tokens,
            )  # fmt: skip
        sampler, seed, chunk = self._samplers[key], self.config.run.seed, self.config.eval.batch_prompts
        return ModelGenerator(sampler, self.tokenizer, params, seed, chunk, label, self.prompt_format)

    def _params(self, run_dir: str, step: int | None):
        return load_run(run_dir, step, config=self.config, layout=self.layout, key="--run")[1]

    def metrics(self, run_dir: str, step: int | None = None, label: str = "eval") -> tuple[dict, list[dict]]:
        ev = self.config.eval
        params = self._params(run_dir, step)
        sp = ev.sampling
        generate = self._generator(
            params, strategy_for(sp), sp.num_samples, sp.max_new_tokens, self.max_prompt_len, label
        )
        return evaluate(self.suite, generate, sp.num_samples)

    def scaling(self, run_dir: str, step: int | None = None, label: str = "scaling") -> dict:
        ev = self.config.eval
        params = self._params(run_dir, step)
        n = ev.scaling_traces
        strategy = strategy_for(ev.sampling, temperature=ev.scaling_temperature)
        traces = self._generator(params, strategy, n, self.budgets[-1], self.max_prompt_len, label)
        drawn = traces([p["prompt"] for p in self.suite.problems], n)

        def continue_ids(prompts: list[list[int]]):
            # Re-encoding a cut trace with the suffix can take a few more tokens than the budget
            # (a cut inside a word): the room comes from the prompts themselves, in steps of
            # ANSWER_MARGIN so that few prompt lengths compile.
            room = self.max_prompt_len + self.budgets[-1] + ANSWER_MARGIN
            room = max(room, -(-max(map(len, prompts)) // ANSWER_MARGIN) * ANSWER_MARGIN)
            return self._generator(params, Greedy(), 1, ev.answer_tokens, room, label).continue_ids(prompts)

        curve = scaling_curve(self.suite, self.tokenizer, drawn, continue_ids, self.budgets, self.prompt_format)
        return {**curve, "gain": scaling_gain(curve)}


def run_eval(config, run_dir: str, step: int | None, out_dir: str) -> dict:
    """`t1jax eval`: metrics (and a scaling curve if eval.budgets is set) -> eval.json, eval.md, samples.

    Several processes evaluate the same problems together (each process's devices sample their
    rows of every batch and every process reads all the samples back); the first writes the files."""
    evaluator = RunEvaluator(config, run_dir)
    summary, records = evaluator.metrics(run_dir, step)
    result = {"run": run_dir, "step": step, "metrics": summary}
    if evaluator.budgets:
        result["scaling"] = evaluator.scaling(run_dir, step)
    if jax.process_index() != 0:
        return result
    out = pathlib.Path(out_dir)
    write_json(out / "eval.json", result)
    write_samples(out / "samples.jsonl", records)
    (out / "eval.md").write_text(eval_markdown(result) + "\n")
    return result


def write_samples(path: pathlib.Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def metrics_row(name: str, summary: dict) -> dict:
    """One table row: pass/maj columns, mean length and truncation rate."""
    row = {"model": name}
    row.update({k: v for k, v in summary.items() if k.startswith(("pass@", "maj@"))})
    row["mean length"] = summary["length"]["mean"]
    row["truncated"] = summary["truncated_rate"]
    if "verification" in summary:
        v = summary["verification"]
        row.update({"attempts": v["attempts_per_response"], "checks right": v["check_accuracy"],
                    "verdicts right": v["verdict_accuracy"]})  # fmt: skip
    return row


def scaling_rows(curves: dict[str, dict]) -> list[dict]:
    rows = []
    for name, curve in curves.items():
        row = {"model": name, **{f"B={b}": a for b, a in zip(curve["budgets"], curve["accuracy"])}}
        rows.append({**row, "gain": curve["gain"]})
    return rows


def eval_markdown(result: dict) -> str:
    m = result["metrics"]
    lines = [
        f"# Evaluation of {result['run']}" + (f" (step {result['step']})" if result["step"] is not None else ""),
        "",
        f"{m['suite']}: {m['num_problems']} problems x {m['num_samples']} samples",
        "",
        markdown_table([metrics_row("model", m)]),
    ]
    if "scaling" in result:
        lines += ["", "## Inference scaling (accuracy vs reasoning budget)", ""]
        lines.append(markdown_table(scaling_rows({"model": result["scaling"]})))
    return "\n".join(lines)
