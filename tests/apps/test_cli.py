"""The command line: bad input gives one clear line (no traceback), good input trains."""

import json

import pytest


def _t1jax(cli, *args):
    done = cli(*args)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["sft", "--config.model.num_layrs=4"],
            "unknown config key 'model.num_layrs'; did you mean 'model.num_layers'?",
        ),
        (["sft", "--config", "configs/nope.py"], "config file not found: configs/nope.py"),
        (["sft", "--config.model.num_kv_heads=3"], "model.num_heads (8) must be divisible by model.num_kv_heads (3)"),
        (["train"], "unknown command 'train'"),
        (["sft", "--lr=3"], "unexpected argument '--lr=3'"),
        (["sample", "--prompt", "p", "--num_samples", "0"], "--num_samples must be >= 1, got 0"),
    ],
)
def test_config_mistakes(t1jax_cli, args, message):
    code, _, err = _t1jax(t1jax_cli, *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_jsonl_line_and_not_a_checkpoint(t1jax_cli, tmp_path, tiny_config_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    code, _, err = _t1jax(
        t1jax_cli,
        "sft",
        "--config",
        tiny_config_path,
        f"--config.sft.data_path={data}",
        "--config.sft.strict_data=true",
        f"--config.run.workdir={tmp_path / 'w1'}",
    )
    assert code == 2 and f"{data}, line 2: missing field 'response'" in err and "Traceback" not in err
    data.write_text('{"prompt": "a"}\nnot json\n')  # skipped by default, but then nothing is left
    code, _, err = _t1jax(
        t1jax_cli,
        "sft",
        "--config",
        tiny_config_path,
        f"--config.sft.data_path={data}",
        f"--config.run.workdir={tmp_path / 'w1'}",
    )
    assert code == 2 and "holds no valid records" in err and "skipped 2 bad lines (1, 2)" in err

    workdir = tmp_path / "w2"
    (workdir / "checkpoints").mkdir(parents=True)
    (workdir / "checkpoints" / "model.bin").write_text("x")
    code, _, err = _t1jax(t1jax_cli, "sft", "--config", tiny_config_path, f"--config.run.workdir={workdir}")
    assert code == 2 and "holds no t1jax checkpoint" in err and str(workdir / "checkpoints") in err


@pytest.mark.slow
def test_sft_on_a_jsonl_file(t1jax_cli, tmp_path, tiny_config_path):
    rows = [{"question": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i}"} for i in range(60)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    workdir = tmp_path / "run"
    code, out, err = _t1jax(
        t1jax_cli,
        "sft",
        "--config",
        tiny_config_path,
        f"--config.sft.data_path={data}",
        "--config.sft.prompt_field=question",
        "--config.sft.response_field=solution",
        "--config.sft.num_steps=2",
        f"--config.run.workdir={workdir}",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["final_step"] == 2 and summary["num_train_examples"] == 57
    assert (workdir / "tokenizer.model").is_file() and (workdir / "metrics.jsonl").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (workdir / "tensorboard").iterdir())


@pytest.mark.slow
def test_sample_from_a_trained_run(t1jax_cli, tmp_path, tiny_config_path):
    workdir = tmp_path / "run"
    base = ["--config", tiny_config_path, f"--config.run.workdir={workdir}"]
    code, _, err = _t1jax(t1jax_cli, "sample", *base, "--prompt", "Add 1 and 2.\n")
    assert code == 2 and "is not a run directory" in err
    code, _, err = _t1jax(t1jax_cli, "sft", *base, "--config.sft.num_steps=2")
    assert code == 0, err
    code, out, err = _t1jax(
        t1jax_cli,
        "sample",
        *base,
        "--prompt",
        "Add 1 and 2.\n",
        "--prompt=Add 3 and 4.\n",
        "--num_samples",
        "3",
        "--config.sampling.max_new_tokens=5",
    )
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [(r["prompt"], r["sample"]) for r in results] == [
        (p, k) for p in ("Add 1 and 2.\n", "Add 3 and 4.\n") for k in range(3)
    ]
    assert all(1 <= r["tokens"] <= 5 and r["mean_logprob"] < 0 for r in results)
    code, _, err = _t1jax(t1jax_cli, "sample", *base, "--num_samples", "x", "--prompt", "p")
    assert code == 2 and "--num_samples must be int" in err
    code, _, err = _t1jax(t1jax_cli, "sample", *base, "--prompt", "p", "--config.sampling.top_p=1.5")
    assert code == 2 and "top_p must be in (0, 1]" in err and "Traceback" not in err
