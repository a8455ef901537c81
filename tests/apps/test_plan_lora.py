"""`t1jax plan` with LoRA: the SFT step and the RL update it compiles are the LoRA ones (the
adapters trained, the base an argument of its own), their memory is what those steps compile to
here, and it is less than full fine-tuning's."""

import math

import jax
import jax.numpy as jnp
import pytest

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.apps.plan import run_plan
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
LORA = {"model.lora_rank": 2, "model.lora_alpha": 4.0}


@pytest.fixture(scope="module")
def configs(request):
    tiny = str(request.config.rootpath / "configs" / "tiny.py")
    return config_lib.load(tiny, SMALL), config_lib.load(tiny, {**SMALL, **LORA})


@pytest.fixture(scope="module")
def plans(configs):
    full, with_lora = configs
    return [{p["name"]: p for p in run_plan(c, "cpu:4", hbm_gib=1.0)["programs"]} for c in (full, with_lora)]


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


def test_the_lora_steps_are_planned_as_they_compile(plans, configs):
    """The LoRA SFT step and RL update, built as `t1jax sft` and `t1jax rl` build them (state of
    adapters, base, batch), compile to the memory the plan reports."""
    _, c = configs
    programs = plans[1]
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


def test_lora_holds_less_than_full_fine_tuning(plans, configs):
    """The steps' arguments: full fine-tuning's are the params and Adam's two moments of each,
    LoRA's the base and three copies of the adapters (them and their moments), so the difference
    per device is 2 x params - 3 x adapters, the params a quarter (4 fsdp devices) but the norms
    (replicated: mesh.rules.norm is "") whole; the anchor the update holds besides is adapters."""
    full, with_lora = plans
    c = configs[1]
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
