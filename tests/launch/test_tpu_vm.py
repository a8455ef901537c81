"""launch/tpu_vm.sh in --dry_run mode: the gcloud commands it would run, with nothing run."""

import shlex
import subprocess

import pytest
from cli_runner import ROOT

SCRIPT = ROOT / "launch" / "tpu_vm.sh"


@pytest.fixture
def no_gcloud(tmp_path):
    """A PATH whose gcloud fails loudly: a dry run must not call it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gcloud"
    fake.write_text("#!/bin/sh\necho 'gcloud was called' >&2\nexit 99\n")
    fake.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def _dry_run(path, *args):
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry_run", *args], capture_output=True, text=True, cwd=ROOT, env={"PATH": path}
    )
    return done.returncode, [shlex.split(line) for line in done.stdout.splitlines() if not line.startswith("#")], done


def test_queue_asks_for_a_queued_resource_with_the_capacity_flag(no_gcloud):
    code, commands, done = _dry_run(no_gcloud, "queue", "my-tpu", "us-east5-a", "v5p-64", "v2-alpha-tpuv5", "--spot")
    assert code == 0, done.stderr
    assert commands == [
        ["gcloud", "compute", "tpus", "queued-resources", "create", "my-tpu", "--node-id", "my-tpu",
         "--zone", "us-east5-a", "--accelerator-type", "v5p-64", "--runtime-version", "v2-alpha-tpuv5", "--spot"]
    ]  # fmt: skip
    assert "gcloud was called" not in done.stderr


def test_run_runs_the_command_on_every_host(no_gcloud):
    code, commands, done = _dry_run(no_gcloud, "run", "my-tpu", "z", "t1jax", "eval", "--run", "/shared/a b")
    assert code == 0, done.stderr
    (command,) = commands
    assert command[8:10] == ["--worker=all", "--command"]
    assert command[10] == "cd ~/t1jax && . .venv/bin/activate && t1jax eval --run /shared/a\\ b "


def test_start_starts_the_command_detached_on_every_host_and_streams_host_0(no_gcloud):
    code, commands, done = _dry_run(
        no_gcloud, "start", "my-tpu", "z", "t1jax", "rl", "--config", "configs/x.py", "--config.run.workdir=/shared/a b"
    )
    assert code == 0, done.stderr
    start, stream = commands
    assert start[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone", "z"]
    assert start[8] == "--worker=all" and start[9] == "--command"
    remote = start[10]
    assert "nohup t1jax rl --config configs/x.py --config.run.workdir=/shared/a\\ b >" in remote  # quoted once
    assert remote.endswith("< /dev/null &")
    assert stream[8] == "--worker=0" and stream[10].startswith("tail -n +1 -F ")


def test_setup_copies_the_checkout_and_installs_the_tpu_extra(no_gcloud):
    code, commands, done = _dry_run(no_gcloud, "setup", "my-tpu", "z")
    assert code == 0, done.stderr
    assert commands[0][:2] == ["tar", "czf"] and ".git" in commands[0]
    assert commands[1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in commands[1]
    assert "pip install -e '.[tpu]'" in commands[2][-1]


def test_logs_of_another_host_and_delete(no_gcloud):
    assert _dry_run(no_gcloud, "logs", "my-tpu", "z", "3")[1][0][8] == "--worker=3"
    code, commands, _ = _dry_run(no_gcloud, "delete", "my-tpu", "z")
    assert code == 0 and commands[0][3:6] == ["queued-resources", "delete", "my-tpu"] and "--force" in commands[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (("queue", "n", "z", "v5p-8", "v", "--cheap"), "unknown flag --cheap"),
        (("launch", "n", "z"), "unknown action: launch"),
        (("run", "n", "z"), "run needs a command"),
        (("start", "n", "z"), "start needs a command"),
        (("create", "n"), "usage: launch/tpu_vm.sh"),
    ],
)
def test_bad_use_is_one_message_and_a_non_zero_exit(no_gcloud, args, message):
    code, _, done = _dry_run(no_gcloud, *args)
    assert code != 0 and message in done.stderr and "gcloud was called" not in done.stderr
