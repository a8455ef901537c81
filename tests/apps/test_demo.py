"""The tiny demo end to end (plumbing, not quality), its resumability, and SFT early stopping."""

import json
import pathlib

import matplotlib.image
import pytest
from cli_runner import run_cli

from t1jax import config as config_lib
from t1jax.apps.demo import report
from t1jax.data.tasks import get_task
from t1jax.eval.forced_checks import validation_traces
from t1jax.train.sft import EarlyStopping

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "demo_tiny.py")


def _demo(workdir, *overrides):
    return run_cli("demo", "--config", TINY, f"--config.run.workdir={workdir}", *overrides)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    done = _demo(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, done


def _logged(run_dir, key):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record[key] for record in map(json.loads, lines) if key in record]


@pytest.mark.slow  # on the tiny demo's runs
def test_tiny_demo_writes_the_whole_report(tiny_demo):
    workdir, done = tiny_demo
    report = workdir / "report"
    for name in ("report.md", "results.json", "scaling.png", "sft_loss.png", "rl_accuracy.png", "rl_length.png",
                 "samples_sft.jsonl", "samples_rl.jsonl"):  # fmt: skip
        assert (report / name).is_file(), name
    for stage in ("drills", "sft", "rl"):
        assert list((report / "tensorboard" / stage).rglob("events.out.tfevents.*")), stage
    results = json.loads((report / "results.json").read_text())
    drills = results["drills"]  # demo.drill_steps = 3: SFT on check drills, then on traces from there
    assert drills["final_step"] == 3 and "validation drills" in drills["data"]
    assert [step for step, _ in drills["val_loss_curve"]] == [3]
    assert (workdir / "sft" / "tokenizer.model").read_bytes() == (workdir / "drills" / "tokenizer.model").read_bytes()
    assert "## Check drills" in (report / "report.md").read_text()
    # Drills run one document per row (demo.drill_batch_size 8); the traces are packed (sft.pack):
    # their 8 rows hold more examples than that.
    examples = {stage: _logged(workdir / stage, "examples") for stage in ("drills", "sft")}
    assert set(examples["drills"]) == {8.0} and min(examples["sft"]) > 8
    for model in ("sft", "rl"):
        metrics = results["eval"][model]
        assert metrics["num_problems"] == 6 and metrics["num_samples"] == 2
        assert 0 <= metrics["pass@1"] <= metrics["pass@2"] <= 1
    scaling = results["scaling"]
    assert scaling["budgets"] == [4, 16]
    assert list(scaling["curves"]) == ["SFT", "RL 2/4", "RL 4/4"]  # demo.rl_checkpoints = 2 of 4 RL steps
    for curve in scaling["curves"].values():
        assert len(curve["accuracy"]) == 2 and curve["gain"] == curve["accuracy"][-1] - curve["accuracy"][0]
        assert curve["traces_per_problem"] == 2  # sampled, as eval.scaling_traces asks
        assert sum(curve["gain_by_problem"]) / 6 == pytest.approx(curve["gain"])
    goals = results["goals"]
    assert goals["pass1_lift"] == pytest.approx(results["eval"]["rl"]["pass@1"] - results["eval"]["sft"]["pass@1"])
    assert goals["pass1_lift_met"] == (goals["pass1_lift"] >= 0.2)
    # the paired intervals are centred on the measured differences
    rates = {m: results["eval"][m]["correct_rate_by_problem"] for m in ("sft", "rl")}
    assert [len(r) for r in rates.values()] == [6, 6]
    assert sum(rates["rl"]) / 6 - sum(rates["sft"]) / 6 == pytest.approx(goals["pass1_lift"])
    lift, gain = goals["pass1_lift_interval"], goals["scaling_gain_interval"]
    assert lift["mean"] == pytest.approx(goals["pass1_lift"]) and lift["low"] <= lift["mean"] <= lift["high"]
    assert gain["mean"] == pytest.approx(goals["scaling_gain_rl_over_sft"])
    assert gain["low"] <= gain["mean"] <= gain["high"]
    assert [step for step, _ in results["sft"]["val_loss_curve"]] == [3, 6]
    assert results["timing"]["total_s"] > 0
    image = matplotlib.image.imread(report / "scaling.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0
    assert "pass@1" in done.stdout and str(report / "report.md") in done.stdout  # the summary
    markdown = (report / "report.md").read_text()
    assert "![inference scaling](scaling.png)" in markdown and "| SFT |" in markdown
    assert results["sft"]["run_dir"] == str(workdir / "sft")
    more_rl = f"--config.demo.sft_dir={workdir / 'sft'} --config.rl.num_steps=N"
    assert (more_rl in done.stdout) == (more_rl in markdown) == (not goals["pass1_lift_met"])


def test_scaling_verdict_needs_the_interval_above_zero_to_be_plainly_met():
    def goals(met, low):
        return {"scaling_gain_met": met, "scaling_gain_interval": {"low": low, "mean": 0.04, "high": 0.09}}

    assert report.scaling_verdict(goals(True, 0.01)) == "met"
    assert report.scaling_verdict(goals(True, -0.001)) == "met, but the difference's interval includes 0"
    assert report.scaling_verdict(goals(False, -0.05)) == "not met"
    assert report.scaling_verdict({"scaling_gain_met": True}) == "met"  # no interval: nothing to qualify


@pytest.mark.slow  # on the tiny demo's runs
def test_rerun_of_a_finished_demo_skips_every_stage(tiny_demo):
    workdir, _ = tiny_demo
    before = json.loads((workdir / "report" / "results.json").read_text())
    again = _demo(workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done earlier") == 5
    after = json.loads((workdir / "report" / "results.json").read_text())
    assert after["eval"] == before["eval"] and after["scaling"] == before["scaling"]


@pytest.mark.long  # on the tiny demo's runs
def test_demo_reuses_a_finished_sft_run(tiny_demo, tmp_path):
    workdir, _ = tiny_demo
    done = _demo(tmp_path / "second", f"--config.demo.sft_dir={workdir / 'sft'}", "--config.rl.num_steps=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "second" / "sft").exists() and not (tmp_path / "second" / "drills").exists()
    results = json.loads((tmp_path / "second" / "report" / "results.json").read_text())
    assert results["sft"]["reused"] == str(workdir / "sft")
    report = (tmp_path / "second" / "report" / "report.md").read_text()
    assert f"Reused the SFT run `{workdir / 'sft'}`" in report and "Ran all steps" not in report


def test_demo_with_a_missing_sft_dir_is_a_clear_error(tmp_path):
    done = _demo(tmp_path, f"--config.demo.sft_dir={tmp_path / 'nowhere'}")
    assert done.returncode == 2 and "holds no SFT checkpoints" in done.stderr


def test_early_stopping_counts_evaluations_without_enough_improvement():
    stopper = EarlyStopping(patience=2, min_improvement=0.1)
    assert [stopper.update(x) for x in (1.0, 0.85, 0.80, 0.79)] == [False, False, False, True]
    assert stopper.best == 0.79  # the best is tracked even when the gain is too small to count
    assert EarlyStopping(2, 0.1, [1.0, 0.99, 0.98]).stopped
    assert not EarlyStopping(0, 0.1, [1.0, 1.0, 1.0, 1.0]).stopped  # patience 0: never stop


def test_sft_stops_early_and_a_rerun_trains_no_further(tmp_path):
    from t1jax.train.sft import run_sft

    overrides = {"run.workdir": str(tmp_path), "sft.num_steps": 12, "sft.eval_every": 2, "sft.patience": 1,
                 "sft.min_improvement": 0.9}  # any eval after the first fails to improve by 90%  # fmt: skip
    config = config_lib.load(TINY, overrides)
    first = run_sft(config)
    assert first["stopped_early"] and first["final_step"] == 4
    second = run_sft(config)
    assert second["stopped_early"] and second["final_step"] == 4 and second["start_step"] == 4


@pytest.mark.slow  # on the tiny demo's runs
def test_eval_command_on_the_demo_rl_run(tiny_demo, tmp_path):
    workdir, _ = tiny_demo
    out = tmp_path / "eval"
    done = run_cli(
        "eval", "--config", TINY, "--run", workdir / "rl", "--step", "2", "--out", out,
        "--config.eval.sampling.num_samples=3", "--config.eval.budgets=2,8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "eval.json").read_text())
    assert result["step"] == 2 and result["metrics"]["num_samples"] == 3
    assert {"pass@1", "pass@2", "pass@3", "maj@2", "maj@3"} <= set(result["metrics"])
    assert result["scaling"]["budgets"] == [2, 8]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 6  # eval.num_problems of the tiny config
    assert "| pass@1 |" in (out / "eval.md").read_text() and "pass@1" in done.stdout


def test_eval_command_errors_are_one_line(tmp_path):
    done = run_cli("eval", "--config", TINY, "--run", tmp_path / "none", timeout=300)
    assert done.returncode == 2 and "t1jax: error:" in done.stderr and "Traceback" not in done.stderr
    assert "none is not a run directory" in done.stderr


@pytest.mark.slow  # on the tiny demo's runs
def test_checks_command_on_the_demo_sft_run(tiny_demo):
    workdir, _ = tiny_demo
    command = ["checks", "--config", TINY, "--run", workdir / "sft"]
    done = run_cli(*command, "--num_traces", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    config = config_lib.load(TINY)
    traces = validation_traces(config, get_task(config.sft.task), 5)
    scored = result["right_attempt_checks"] + result["wrong_attempt_checks"] + result["skipped_checks"]
    latest = max(int(path.name) for path in (workdir / "sft" / "checkpoints").iterdir() if path.name.isdigit())
    assert result["step"] == latest and scored == sum(t["response"].count("Check: ") for t in traces)
    assert 0 <= result["right_attempt_accuracy"] <= 1 and 0 <= result["wrong_attempt_accuracy"] <= 1
    bad = run_cli(*command, "--num_traces", "0", timeout=300)
    assert bad.returncode == 2 and "--num_traces must be >= 1" in bad.stderr
