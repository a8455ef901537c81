"""`t1jax plan`: the memory it reports is what XLA's memory analysis gives for the same programs
compiled here independently (with LoRA too, and less than full fine-tuning's); the verdict and
its knobs; topologies named wrongly are one line."""

import importlib.util
import json
import logging
import math
import sys

import jax
import jax.numpy as jnp
import pytest

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.apps import cli
from t1jax.apps.plan import format_table, run_plan
from t1jax.apps.plan_programs import rl_update_rows
from t1jax.apps.topology import GIB, parse_topology
from t1jax.config import ModelConfig
from t1jax.errors import ConfigError
from t1jax.model import lora
from t1jax.train.optimizer import learning_rate_schedule
from t1jax.train.rl.update import BATCH_KEYS, make_update_step
from t1jax.train.sft_step import make_sft_step
from t1jax.train.state import layout_from_config

SMALL = {  # the tiny config, smaller still: each program compiles in a few seconds
    "model.num_layers": 1,
    "sft.seq_len": 32,
    "sampling.max_prompt_len": 16,
    "rl.sampling.max_new_tokens": 8,
}


@pytest.fixture(scope="module")
def small_config(request):
    return config_lib.load(str(request.config.rootpath / "configs" / "tiny.py"), SMALL)


HBM_GIB = 1e-6  # a kilobyte: nothing fits


@pytest.fixture(scope="module")
def plan(small_config):
    return run_plan(small_config, "cpu:4", hbm_gib=HBM_GIB)


def _programs(report):
    return {p["name"]: p for p in report["programs"]}


def _compiled_memory(jitted, *args):
    m = jitted.lower(*args).compile().memory_analysis()
    return {
        "arguments_bytes": m.argument_size_in_bytes,
        "outputs_bytes": m.output_size_in_bytes,
        "aliased_bytes": m.alias_size_in_bytes,
        "temporaries_bytes": m.temp_size_in_bytes,
    }


def _reported(program):
    return {k: program[k] for k in ("arguments_bytes", "outputs_bytes", "aliased_bytes", "temporaries_bytes")}


def test_training_memory_is_what_the_compiled_steps_report(plan, small_config):
    """The SFT step and the RL update, built here the way `t1jax sft` and `t1jax rl` build them
    (layout_from_config on the first 4 devices) at shapes worked out by hand, compile to the
    memory the plan reports."""
    c, programs = small_config, _programs(plan)
    assert plan["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and plan["chips"] == 4
    devices = jax.devices()[:4]

    layout = layout_from_config(c, c.sft.num_steps, devices)
    sharding = parallel.batch_sharding(layout.mesh, layout.rules)
    batch = {k: jax.ShapeDtypeStruct((8, 33), jnp.int32, sharding=sharding) for k in ("tokens", "loss_mask")}
    step = make_sft_step(layout, learning_rate_schedule(c.optim, c.sft.num_steps), 1, c.optim.logits_chunk_tokens)
    assert _reported(programs["sft_step"]) == _compiled_memory(step, layout.abstract_state(), batch)

    # 4 prompts x 4 samples, packed 1 per row: 16 rows of bucket(16) + 8 = 24 tokens
    rl_config = config_lib.with_overrides(c, {"optim.learning_rate": c.rl.learning_rate})
    layout = layout_from_config(rl_config, c.rl.num_steps, devices)
    dtypes = {"tokens": jnp.int32, "positions": jnp.int32, "segment_ids": jnp.int32, "response": jnp.bool_}
    batch = {k: jax.ShapeDtypeStruct((16, 24), dtypes.get(k, jnp.float32), sharding=sharding) for k in BATCH_KEYS}
    step = make_update_step(layout, c.rl, 1, c.optim.logits_chunk_tokens)
    assert _reported(programs["rl_update"]) == _compiled_memory(step, layout.abstract_state(), batch)
    assert programs["rl_update"]["shape"].startswith("16 rows x 24 tokens")


def test_decode_step_arguments_are_the_params_and_caches(plan, small_config):
    """The decode step's arguments: a quarter (4 fsdp shards) of the params and of both caches,
    sized by hand: layers x (keys + values) x rows x kv_heads x head_dim x slots x 4 bytes."""
    decode = _programs(plan)["decode_step"]
    mc = ModelConfig.from_config(small_config.model)
    layers, kv, head_dim = mc.num_layers, mc.num_kv_heads, mc.dim_per_head
    assert (layers, kv, head_dim) == (1, 2, 8)
    # 4 prompts of bucket(16) = 16 slots; their 4 x 4 = 16 samples' own caches of 8 slots
    prompt_cache = layers * 2 * 4 * kv * head_dim * 16 * 4 + 4 * 16 * 4  # + key positions
    sample_cache = layers * 2 * 16 * kv * head_dim * 8 * 4 + 16 * 8 * 4
    tokens = 16 * 4 * 3  # last token, its position, its uniform number
    norms = (2 * layers + 1) * mc.d_model  # replicated (mesh.rules.norm is "")
    params = (mc.num_params() - norms) * 4 // 4 + norms * 4
    # + the sample cache's next slot (the prompt cache's is unused: jit drops that argument)
    per_device = params + (prompt_cache + sample_cache + tokens) // 4 + 4
    assert decode["arguments_bytes"] == per_device
    assert decode["aliased_bytes"] >= sample_cache // 4  # the sample cache is updated in place
    # the caches' own share, reported apart: both caches and their two int32 write indices
    assert decode["kv_cache_bytes"] == (prompt_cache + sample_cache) // 4 + 2 * 4


def test_report_adds_up(plan):
    for p in plan["programs"]:
        held = p["arguments_bytes"] + p["outputs_bytes"] - p["aliased_bytes"] + p["temporaries_bytes"]
        assert p["program_bytes"] == held + p["code_bytes"]
        assert p["total_bytes"] == p["program_bytes"] + p["resident_bytes"]
        assert p["time_at_mfu_s"] is None  # a CPU target has no TPU peak
    resident = _programs(plan)
    assert resident["sft_step"]["resident_bytes"] == 0
    assert resident["rl_update"]["resident_bytes"] * 3 < resident["decode_step"]["resident_bytes"]  # + Adam's moments
    assert json.loads(json.dumps(plan)) == plan


def test_does_not_fit_says_by_how_much_and_what_to_turn(plan):
    assert not plan["fits"]
    table = format_table(plan)
    for p in plan["programs"]:
        over = p["total_bytes"] - int(HBM_GIB * GIB)
        assert not p["fits"] and p["over_bytes"] == over > 0 and p["advice"]
        assert f"{p['name']} does not fit: {over / GIB:.2f} GiB over; turn: {p['advice'][0]}" in table
    # SFT micro-batches of 8 rows / 4 shards = 2 rows per shard: halving them is a knob
    assert "sft.grad_accum_steps=2 (1 row per batch shard)" in " ".join(_programs(plan)["sft_step"]["advice"])
    # the cache is split over all 4 chips whatever the mesh's shape: only fewer rows, shorter
    # responses or more chips shrink its share
    decode_advice = " ".join(_programs(plan)["decode_step"]["advice"])
    assert "mesh.tensor" not in decode_advice and "a slice with more chips" in decode_advice


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("v5p:2x2x1", ("v5p", (2, 2, 1))),
        ("v5p-8", ("v5p", (2, 2, 1))),  # v5p slice names count TensorCores, 2 per chip
        ("v5p-64", ("v5p", (2, 4, 4))),
        ("v6e-16", ("v6e", (4, 4))),  # v6e ones count chips
        ("v5litepod-8", ("v5e", (2, 4))),
        ("V4:4x4x4", ("v4", (4, 4, 4))),
        ("cpu:8", ("cpu", (8,))),
    ],
)
def test_topology_names(text, parsed):
    assert parse_topology(text) == parsed


@pytest.mark.parametrize(
    "text, message",
    [
        ("v9:2x2", "unknown TPU generation 'v9'"),
        ("v5p:2x2", "a v5p slice has 3 positive dimensions"),
        ("v6e:0x4", "a v6e slice has 2 positive dimensions"),
        ("v5p-12", "no default shape for this slice"),
        ("tpu", "is not a topology: use GEN:AxBxC"),
        ("cpu:0", "needs at least one device"),
    ],
)
def test_bad_topologies_say_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_topology(text)


@pytest.fixture
def cli_main(monkeypatch):
    """cli.main in this process; it quiets some loggers and the unraisable hook: undone after."""
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    for name in ("absl", "asyncio"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    return cli.main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--topology", "v5p:2x"], "--topology 'v5p:2x' is not a topology"),
        (["--topology", "v4-6"], "--topology v4-6: no default shape for this slice (known: v4-8, v4-16,"),
        ([], "plan needs --topology"),
        (["--topology", "cpu:2", "--mfu", "2"], "--mfu must be in (0, 1], got 2.0"),
        (["--topology", "cpu:2", "--hbm_gib", "0"], "--hbm_gib must be positive, got 0.0"),
        (["--topology", "cpu:2", "--programs", "sft"], "--programs must name some of sft_step, rl_update, decode_step"),
    ],
)
def test_command_line_mistakes_are_one_line(cli_main, capsys, tiny_config_path, args, message):
    assert cli_main(["plan", "--config", tiny_config_path, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_command_line_prints_the_table_and_json(t1jax_cli, tiny_config_path):
    done = t1jax_cli("plan", "--config", tiny_config_path, "--topology", "cpu:2", check=True)
    report = json.loads(done.stdout)
    assert report["fits"] and report["mesh"] == {"data": 1, "fsdp": 2, "tensor": 1}
    assert [p["name"] for p in report["programs"]] == ["sft_step", "rl_update", "decode_step"]
    assert "cpu:2: 2 x cpu" in done.stderr and "does not fit" not in done.stderr
    decode = report["programs"][2]
    assert f"KV cache {decode['kv_cache_bytes'] / 2**30:.2f} GiB per chip" in done.stderr


def _rl_config(**rl):
    return config_lib.load(None, {f"rl.{k}": v for k, v in rl.items()})


@pytest.mark.parametrize(
    "rl, shards, expected",
    [
        # 8 prompts x 8 samples = 64 sequences of bucket(256) + 128 = 384 tokens, one per row
        ({"pack": False}, 1, (64, 384)),
        ({"pack": False, "minibatches": 4, "grad_accum_steps": 2}, 4, (16, 384)),
        ({"pack": False, "prompts_per_step": 5}, 8, (40, 384)),  # 40 rows, a multiple of 8 shards
        # packed: rows in steps of 64 // 8 = 8; two sequences per row of 768 tokens
        ({"pack_factor": 2}, 1, (32, 768)),
        # ceil(56 / 3) = 19 rows, in steps of 2 shards x (56 // 16 = 3): 24
        ({"pack_factor": 3, "prompts_per_step": 7}, 2, (24, 1152)),
    ],
)
def test_rl_update_rows(rl, shards, expected):
    assert rl_update_rows(_rl_config(**rl), shards) == expected


@pytest.mark.parametrize(
    "name, params",  # the published parameter counts
    [("qwen2_5_1_5b", 1.54e9), ("qwen2_5_7b", 7.62e9), ("qwen2_5_14b", 14.7e9), ("qwen2_5_32b", 32.8e9),
     ("llama3_1_8b", 8.03e9)],
)  # fmt: skip
def test_model_configs_have_their_published_size(request, name, params):
    config = config_lib.load(str(request.config.rootpath / "configs" / f"{name}.py"))
    assert ModelConfig.from_config(config.model).num_params() == pytest.approx(params, rel=0.01)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu is not installed (pip install .[tpu])")
def test_tpu_topology_compiles_with_libtpu(small_config):
    """XLA's TPU compiler, through libtpu's compile-only devices, on this host without a TPU."""
    report = run_plan(small_config, "v5p-8")
    assert report["topology"] == "v5p:2x2x1" and report["chips"] == 4 and report["device_kind"] == "TPU v5"
    assert report["hbm_bytes_per_chip"] == int(95.74 * GIB) and report["compiled_by"] == "XLA:TPU (libtpu)"
    for p in report["programs"]:
        assert p["fits"] and p["flops_per_chip"] > 0
        assert p["time_at_mfu_s"] == pytest.approx(p["flops_per_chip"] / (459e12 * 0.4))


LORA = {"model.lora_rank": 2, "model.lora_alpha": 4.0}


@pytest.fixture(scope="module")
def lora_config(small_config):
    return config_lib.with_overrides(small_config, LORA)


@pytest.fixture(scope="module")
def lora_plan(lora_config):
    """With LoRA the steps train the adapters and take the base as an argument of its own."""
    return run_plan(lora_config, "cpu:4", hbm_gib=1.0)


def test_the_lora_steps_are_planned_as_they_compile(lora_plan, lora_config):
    """The LoRA SFT step and RL update, built as `t1jax sft` and `t1jax rl` build them (state of
    adapters, base, batch), compile to the memory the plan reports."""
    c, programs = lora_config, _programs(lora_plan)
    devices = jax.devices()[:4]
    layout = layout_from_config(c, c.sft.num_steps, devices)
    assert layout.lora
    sharding = parallel.batch_sharding(layout.mesh, layout.rules)
    batch = {k: jax.ShapeDtypeStruct((8, 33), jnp.int32, sharding=sharding) for k in ("tokens", "loss_mask")}
    step = make_sft_step(layout, learning_rate_schedule(c.optim, c.sft.num_steps), 1, c.optim.logits_chunk_tokens)
    args = (layout.abstract_state(), layout.abstract_params(), batch)
    assert _reported(programs["sft_step"]) == _compiled_memory(step, *args)

    rl_config = config_lib.with_overrides(c, {"optim.learning_rate": c.rl.learning_rate})
    layout = layout_from_config(rl_config, c.rl.num_steps, devices)
    dtypes = {"tokens": jnp.int32, "positions": jnp.int32, "segment_ids": jnp.int32, "response": jnp.bool_}
    batch = {k: jax.ShapeDtypeStruct((16, 24), dtypes.get(k, jnp.float32), sharding=sharding) for k in BATCH_KEYS}
    step = make_update_step(layout, c.rl, 1, c.optim.logits_chunk_tokens)
    args = (layout.abstract_state(), layout.abstract_params(), batch)
    assert _reported(programs["rl_update"]) == _compiled_memory(step, *args)


def test_lora_holds_less_than_full_fine_tuning(plan, lora_plan, lora_config):
    """The steps' arguments: full fine-tuning's are the params and Adam's two moments of each,
    LoRA's the base and three copies of the adapters (them and their moments), so the difference
    per device is 2 x params - 3 x adapters, the params a quarter (4 fsdp devices) but the norms
    (replicated: mesh.rules.norm is "") whole; the anchor the update holds besides is adapters."""
    full, with_lora, c = _programs(plan), _programs(lora_plan), lora_config
    layout = layout_from_config(c, 1, jax.devices()[:4])
    cfg = layout.model_config
    norms = (2 * cfg.num_layers + 1) * cfg.d_model
    params = (cfg.num_params() - norms) * 4 // 4 + norms * 4
    # a and b of a weight: the side of the model dimension (embed) sharded 4 ways, the other side
    # (heads, mlp: on the tensor axis of 1) whole
    d, r = cfg.d_model, cfg.lora_rank
    adapters = sum(r * (d // 4 + math.prod(t.shape) // d) for t in lora.targets(cfg)) * 4
    for name in ("sft_step", "rl_update"):
        saved = full[name]["arguments_bytes"] - with_lora[name]["arguments_bytes"]
        assert saved == 2 * params - 3 * adapters, name
        assert with_lora[name]["total_bytes"] < full[name]["total_bytes"]
    assert with_lora["rl_update"]["resident_bytes"] == adapters
    assert "adapters" in with_lora["rl_update"]["resident"]
    # while sampling: the merged weights are the argument, the base and the adapters stay besides
    assert with_lora["decode_step"]["arguments_bytes"] == full["decode_step"]["arguments_bytes"]
