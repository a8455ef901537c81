"""launch/sweep.py: which runs an ablation makes, their commands, the table, and resuming, without training:
a fake `t1jax` (a tiny script that writes results.json) stands in for the demo."""

import importlib.util
import json
import math
import pathlib
import shlex
import subprocess
import sys

import pytest

from t1jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("t1jax_sweep", ROOT / "launch" / "sweep.py")
sweep = sys.modules["t1jax_sweep"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(sweep)
GRID = sweep.load_ablations()

FAKE_DEMO = """
import json, pathlib, sys
args = sys.argv[1:]
workdir = pathlib.Path(next(a.split("=", 1)[1] for a in args if a.startswith("--config.run.workdir=")))
with open(sys.argv[0] + ".calls", "a") as f:
    f.write(json.dumps(args) + "\\n")
if workdir.name == "entropy=off":
    sys.exit(3)
(workdir / "report").mkdir(parents=True, exist_ok=True)
(workdir / "report" / "results.json").write_text(json.dumps({"eval": {"rl": {"pass@1": 0.5}}}))
"""


def _runs(mode="ablation", only=None):
    return sweep.build_runs(GRID.FACTORS, GRID.BASELINE, mode, only)


def test_ablation_and_grid_sizes_and_names():
    levels = [len(v) for v in GRID.FACTORS.values()]
    ablation, grid = _runs("ablation"), _runs("grid")
    assert len(ablation) == 1 + sum(n - 1 for n in levels)
    assert len(grid) == math.prod(levels)
    for runs in (ablation, grid):
        names = [run.name for run in runs]
        assert len(set(names)) == len(names) and names[0] == "base" and runs[0].changes == {}
        assert all(sweep._SAFE_NAME.fullmatch(name) and name not in (".", "..") for name in names)
    # one change at a time, and the ablation is the part of the grid with at most one change
    assert all(len(run.changes) == 1 for run in ablation[1:])
    assert {r.name: r.overrides for r in ablation} == {r.name: r.overrides for r in grid if len(r.changes) <= 1}
    assert "K=4" in {r.name for r in ablation} and "K=4_entropy=off_anchor=frozen_penalties=off" in {
        r.name for r in grid
    }
    assert [r.name for r in _runs("grid", ["K=4", "base"])] == ["base", "K=4"]
    with pytest.raises(ValueError, match="unknown run"):
        _runs("ablation", ["K=4_entropy=off"])


def test_every_override_is_a_valid_config_key():
    """The commands' overrides load against the schema (demo.* aside: the demo adds those keys)."""
    out = "runs/sweep"
    for run in _runs("grid"):
        argv = sweep.command(run, base_config="x.py", out=out, sft_dir=sweep.shared_sft_dir(out), prefix=())
        overrides = [a for a in argv if a.startswith("--config.")]
        assert overrides and all("=" in a for a in overrides)
        config = config_lib.load(None, [a for a in overrides if not a.startswith("--config.demo.")])
        for key, value in run.overrides.items():
            section, _, leaf = key.rpartition(".")
            assert config[section][leaf] == value


def test_bad_grids_are_refused():
    factors = {"K": {"16": {"rl.sampling.num_samples": 16}, "4/x": {"rl.sampling.num_samples": 4}}}
    with pytest.raises(ValueError, match="4/x"):
        sweep.build_runs(factors, {"K": "16"})
    with pytest.raises(ValueError, match="baseline level"):
        sweep.build_runs({"K": {"16": {}}}, {"K": "8"})


def _script(*args):
    result = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "sweep.py"), *args], capture_output=True, text=True, cwd=ROOT
    )
    return result.returncode, result.stdout, result.stderr


def test_dry_run_prints_one_command_per_run(tmp_path):
    out = str(tmp_path / "sw")
    code, stdout, _ = _script(
        "--dry_run", "--out", out, "--extra", "--config.rl.num_steps=3", "--extra", "sft.num_steps=2"
    )
    assert code == 0
    lines = stdout.strip().splitlines()
    assert [shlex.split(line)[1:4] for line in lines] == [["-m", "t1jax", "demo"]] * len(_runs())
    base, k4 = shlex.split(lines[0]), shlex.split(lines[1])
    assert base[4:7] == ["--config", "configs/demo.py", f"--config.run.workdir={out}/base"]
    assert "--config.rl.num_steps=3" in base and "--config.sft.num_steps=2" in base
    assert not any(a.startswith("--config.demo.sft_dir") for a in base)
    assert f"--config.demo.sft_dir={out}/base/sft" in k4 and "--config.rl.sampling.num_samples=4" in k4
    assert not (tmp_path / "sw").exists()  # nothing ran, nothing written
    code, stdout, _ = _script("--dry_run", "--no_share_sft", "--only", "K=4")
    assert code == 0 and len(stdout.splitlines()) == 1 and "sft_dir" not in stdout
    # an SFT run named for every run is what every run reuses, the baseline's included
    code, stdout, _ = _script("--dry_run", "--out", out, "--extra", "demo.sft_dir=/sft/of/a/demo")
    assert code == 0
    sft_args = [[a for a in shlex.split(line) if "sft_dir" in a] for line in stdout.splitlines()]
    assert sft_args == [["--config.demo.sft_dir=/sft/of/a/demo"]] * len(_runs())
    code, _, stderr = _script("--dry_run", "--extra=--config.rl.entropy_coef=0.5")
    assert code == 2 and "ablated key" in stderr


def test_launcher_template():
    run = _runs(only=["penalties=off"])[0]
    argv = sweep.command(run, base_config="configs/demo.py", out="runs/s", prefix=("python", "-m", "t1jax"))
    line = sweep.launcher_line("gcloud ssh my-tpu --command {cmd} # {name} {keep}", argv, run.name)
    words = shlex.split(line)
    assert words[:3] == ["gcloud", "ssh", "my-tpu"] and shlex.split(words[4]) == argv
    assert words[-2:] == ["penalties=off", "{keep}"]
    line = sweep.launcher_line("launch/tpu_vm.sh run t z {args}", argv, run.name)
    assert shlex.split(line)[4:] == argv
    code, stdout, _ = _script("--launcher", "echo {name}: {cmd}", "--only", "base,K=4")
    assert code == 0
    assert [shlex.split(line)[:2] for line in stdout.splitlines()] == [["echo", "base:"], ["echo", "K=4:"]]
    assert shlex.split(shlex.split(stdout.splitlines()[0])[2])[:3] == ["python", "-m", "t1jax"]


def test_table(tmp_path):
    out = str(tmp_path)
    full = {
        "eval": {"sft": {"pass@1": 0.125, "pass@4": 0.5}, "rl": {"pass@1": 0.375}},
        "scaling": {"gain": {"sft": 0.25, "rl": 0.0625}},
        "goals": {
            "pass1_lift": 0.25,
            "pass1_lift_interval": {"mean": 0.25, "low": 0.125, "high": 0.375},
            "scaling_gain_rl_over_sft": -0.1875,
        },
        "timing": {"total_s": 90.0},
    }
    partial = {"eval": {"sft": {"pass@1": 0.5}, "rl": {}}, "timing": {"total_s": None}}
    for name, results in (("base", full), ("K=4", partial)):
        sweep.results_path(out, name).parent.mkdir(parents=True)
        sweep.results_path(out, name).write_text(json.dumps(results))
    text = sweep.table(_runs(only=["base", "K=4", "entropy=off"]), out)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    # an interval shows where results.json has one (here the lift's, not the gains')
    lift = "+0.250 (+0.125, +0.375)"
    assert rows[0] == ["base", "baseline", "0.125", "0.375", lift, "0.250", "0.062", "-0.188", "1.5 min"]
    assert rows[1] == ["K=4", "rl.sampling.num_samples=4", "0.500"] + ["—"] * 6
    assert rows[2] == ["entropy=off", "rl.entropy_coef=0.0"] + ["—"] * 7
    code, stdout, _ = _script("--table", "--out", out)
    assert code == 0 and "| base | baseline | 0.125 | 0.375 | +0.250 (+0.125, +0.375) |" in stdout
    assert (tmp_path / "sweep.md").read_text() == stdout


def test_runs_skips_done_and_survives_failures(tmp_path, capsys):
    fake = tmp_path / "fake_t1jax.py"
    fake.write_text(FAKE_DEMO)
    out, runs = str(tmp_path / "sw"), _runs(only=["base", "K=4", "entropy=off"])
    kwargs = dict(
        base_config="configs/demo.py", out=out, extras=["--config.rl.num_steps=2"], prefix=[sys.executable, str(fake)]
    )
    assert sweep.run_all(runs, **kwargs) == ["entropy=off"]
    calls = [json.loads(line) for line in (tmp_path / "fake_t1jax.py.calls").read_text().splitlines()]
    assert [c[3].rsplit("/", 1)[1] for c in calls] == ["base", "K=4", "entropy=off"]
    assert all(c[:2] == ["demo", "--config"] and "--config.rl.num_steps=2" in c for c in calls)
    assert f"--config.demo.sft_dir={out}/base/sft" in calls[1] and not any("sft_dir" in a for a in calls[0])
    assert "FAILED (exit status 3)" in capsys.readouterr().out
    # rerun: the finished runs are skipped, the failed one is tried again
    assert sweep.run_all(runs, **kwargs) == ["entropy=off"]
    calls = (tmp_path / "fake_t1jax.py.calls").read_text().splitlines()
    assert len(calls) == 4 and "entropy=off" in calls[-1]
    assert capsys.readouterr().out.count("skipped") == 2


def test_runs_train_their_own_sft_while_the_baseline_is_not_done(tmp_path, capsys):
    fake = tmp_path / "fake_t1jax.py"
    fake.write_text(FAKE_DEMO)
    runs = _runs(only=["K=4"])
    assert sweep.run_all(runs, base_config="c.py", out=str(tmp_path / "sw"), prefix=[sys.executable, str(fake)]) == []
    assert "sft_dir" not in (tmp_path / "fake_t1jax.py.calls").read_text()
    assert "trains its own SFT" in capsys.readouterr().out


FAKE_TPU_SCRIPT = """
import json, pathlib, shutil, sys
action, slice_name, zone, *rest = sys.argv[1:]
remote = pathlib.Path(sys.argv[0]).parent / "remote" / slice_name  # each slice's own disk
with open(sys.argv[0] + ".calls", "a") as f:
    f.write(json.dumps([action, slice_name, zone, *rest]) + "\\n")
if action == "run":
    workdir = next(a.split("=", 1)[1] for a in rest if a.startswith("--config.run.workdir="))
    if workdir.endswith("entropy=off"):
        sys.exit(3)
    (remote / workdir.lstrip("/") / "report").mkdir(parents=True, exist_ok=True)
    (remote / workdir.lstrip("/") / "report" / "results.json").write_text(json.dumps({"slice": slice_name}))
elif action == "fetch":
    local = pathlib.Path(rest[0])
    local.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(remote / rest[0].lstrip("/"), local)
"""


def test_slices_dry_run_gives_each_run_a_slice_and_a_fetch(tmp_path):
    code, stdout, _ = _script("--dry_run", "--slices", "tpu-a,tpu-b", "--zone", "z", "--only", "base,K=4,entropy=off")
    assert code == 0
    lines = [shlex.split(line) for line in stdout.splitlines()]
    assert [line[:4] for line in lines] == [
        ["launch/tpu_vm.sh", "run", "tpu-a", "z"], ["launch/tpu_vm.sh", "fetch", "tpu-a", "z"],
        ["launch/tpu_vm.sh", "run", "tpu-b", "z"], ["launch/tpu_vm.sh", "fetch", "tpu-b", "z"],
        ["launch/tpu_vm.sh", "run", "tpu-a", "z"], ["launch/tpu_vm.sh", "fetch", "tpu-a", "z"],
    ]  # fmt: skip
    assert lines[0][4:7] == ["python", "-m", "t1jax"] and lines[1][4] == "runs/sweep/base/report/results.json"
    assert not any("sft_dir" in word for line in lines for word in line)  # slices share no disk


def test_runs_on_slices_fetch_results_and_report_failures(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "fake_tpu_vm.py"
    fake.write_text(FAKE_TPU_SCRIPT)
    monkeypatch.setattr(sweep, "TPU_SCRIPT", str(fake))
    monkeypatch.setattr(sweep, "slice_commands", lambda *a: [[sys.executable, *c] for c in _real_commands(*a)])
    out, runs = str(tmp_path / "sw"), _runs(only=["base", "K=4", "entropy=off"])
    failed = sweep.run_on_slices(runs, ["tpu-a", "tpu-b"], "z", base_config="configs/demo.py", out=out)
    assert failed == ["entropy=off"]
    calls = [json.loads(line) for line in (tmp_path / "fake_tpu_vm.py.calls").read_text().splitlines()]
    workdirs = [a.rsplit("/", 1)[1] for c in calls if c[0] == "run" for a in c if a.startswith("--config.run.workdir")]
    assert sorted(workdirs) == ["K=4", "base", "entropy=off"]  # every run once
    for name in ("base", "K=4"):
        fetched = json.loads(sweep.results_path(out, name).read_text())
        ran_on = [c[1] for c in calls if c[0] == "run" and any(a.endswith(f"/{name}") for a in c)]
        assert fetched == {"slice": ran_on[0]}  # the results came back from the slice that ran it
    assert not sweep.results_path(out, "entropy=off").exists()
    assert "entropy=off: FAILED" in capsys.readouterr().out
    # a rerun skips the finished runs
    assert sweep.run_on_slices(runs, ["tpu-a"], "z", base_config="configs/demo.py", out=out) == ["entropy=off"]
    assert "skipped" in capsys.readouterr().out


_real_commands = sweep.slice_commands
