"""The programs `t1jax plan` compiles, at a config's shapes and on a target's devices, built from
abstract arrays only (jax.ShapeDtypeStruct with shardings): no parameter is ever allocated, so a
32B model plans on a laptop.

  sft_step     make_sft_step on sft.batch_size rows of sft.seq_len + 1 tokens, as `t1jax sft` runs it
  rl_update    make_update_step on the longest batch one RL update can get (every sequence at
               sampling.max_prompt_len + rl.sampling.max_new_tokens), as `t1jax rl` runs it
  decode_step  one sampler step: rl.prompts_per_step x rl.sampling.num_samples rows, each one
               token against the prompts' shared cache and its own cache at its full length
               (the last stage of the sampler's while_loops), the cache buffer updated in place

With LoRA (model.lora_rank > 0) they are the LoRA programs: the steps train the adapters and take
the frozen base as an argument, the anchor is adapters, and the sampler runs the merged weights
while the base stays resident.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.config import MESH_AXES, with_overrides
from t1jax.sampling import bucket, stage_ends, strategy_for
from t1jax.sampling.strategies import choose_with_uniforms
from t1jax.train.micro_batches import micro_batch_count
from t1jax.train.optimizer import learning_rate_schedule
from t1jax.train.rl.update import BATCH_KEYS, make_update_step
from t1jax.train.sft_step import make_sft_step, sft_micro_batches
from t1jax.train.state import StateLayout, make_layout, model_params, optimizer_from_config


@dataclasses.dataclass
class Program:
    """A jitted function and the abstract arguments to lower it with, and what the report needs
    besides XLA's analyses."""

    name: str
    jitted: Any
    args: tuple
    shape: str  # what it was built at, in words
    loop_trips: int  # the micro-batch loop's trip count (XLA's cost analysis counts a loop body once)
    model_flops: float  # the whole mesh's, from the model's shape (ModelConfig.flops_per_token)
    resident_bytes: int  # per device: what the run holds outside this program meanwhile
    resident: str  # ... in words
    micro_rows: int = 0  # rows of a micro-batch per batch shard (0: no micro-batches)
    accum_key: str = ""  # the config key of the micro-batch count
    length_key: str = ""  # the config key that bounds the rows' length
    kv_cache_bytes: int = 0  # per device: the KV caches among the arguments (decode_step)


def target_mesh(mesh_config, devices) -> Mesh:
    """The config's mesh over `devices`, ordered by the chips' interconnect where mesh_utils
    knows it (a TPU slice), else in device order."""
    shape = parallel.resolve_mesh_shape(mesh_config, len(devices))
    try:
        array = mesh_utils.create_device_mesh(shape, list(devices))
    except (ValueError, NotImplementedError, AssertionError):
        array = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def state_layout(config, mesh: Mesh, total_steps: int) -> StateLayout:
    """layout_from_config on a mesh built here (the target's devices are not this process's)."""
    model_config = model_lib.ModelConfig.from_config(config.model)
    tx = optimizer_from_config(config, model_config, total_steps)
    return make_layout(model_config, tx, mesh, parallel.rules_table(config.mesh.rules))


def step_args(layout: StateLayout, batch: dict) -> tuple:
    """The abstract arguments of a train step: (state, batch), with LoRA (state, base, batch)."""
    base = (layout.abstract_params(),) if layout.lora else ()
    return (layout.abstract_state(), *base, batch)


def device_bytes(tree) -> int:
    """Bytes one device holds of a tree of sharded abstract arrays."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _batch(layout: StateLayout, keys_dtypes: dict, rows: int, length: int) -> dict:
    sharding = parallel.batch_sharding(layout.mesh, layout.rules)
    return {k: jax.ShapeDtypeStruct((rows, length), dt, sharding=sharding) for k, dt in keys_dtypes.items()}


def sft_program(config, mesh: Mesh) -> Program:
    s = config.sft
    layout = state_layout(config, mesh, s.num_steps)
    shards = parallel.batch_shards(mesh, layout.rules)
    accum = sft_micro_batches(s, mesh, layout.rules)
    keys = ("tokens", "loss_mask") + (("segment_ids", "positions") if s.pack else ())
    batch = _batch(layout, dict.fromkeys(keys, jnp.int32), s.batch_size, s.seq_len + 1)
    schedule = learning_rate_schedule(config.optim, s.num_steps)
    step = make_sft_step(layout, schedule, accum, config.optim.logits_chunk_tokens)
    tokens = s.batch_size * s.seq_len
    return Program(
        name="sft_step",
        jitted=step,
        args=step_args(layout, batch),
        shape=f"{s.batch_size} rows x {s.seq_len + 1} tokens, {accum} micro-batches",
        loop_trips=accum,
        model_flops=tokens * layout.model_config.flops_per_token(s.seq_len),
        resident_bytes=0,
        resident="",
        micro_rows=s.batch_size // accum // shards,
        accum_key="sft.grad_accum_steps",
        length_key="sft.seq_len",
    )


def rl_layout(config, mesh: Mesh) -> StateLayout:
    """The RL run's layout: its optimizer follows rl.learning_rate, rl.warmup_steps, rl.trainable."""
    r = config.rl
    rl_optim = {"optim.learning_rate": r.learning_rate, "optim.warmup_steps": r.warmup_steps}
    config = with_overrides(config, {**rl_optim, "optim.trainable": r.trainable})
    return state_layout(config, mesh, r.num_steps * r.num_passes * r.minibatches)


def rl_update_rows(config, shards: int) -> tuple[int, int]:
    """(rows, row length) of one update's batch when every sequence has the longest prompt and
    response (rl.batch.pack's row counts, divided among rl.minibatches)."""
    r = config.rl
    capacity = r.prompts_per_step * (r.keep_per_prompt or r.sampling.num_samples)
    multiple = r.minibatches * max(1, r.grad_accum_steps) * shards
    length = bucket(config.sampling.max_prompt_len) + r.sampling.max_new_tokens
    if r.pack:
        multiple *= max(1, capacity // (8 * multiple))
        capacity, length = -(-capacity // r.pack_factor), length * r.pack_factor
    return -(-capacity // multiple) * multiple // r.minibatches, length


def rl_update_program(config, mesh: Mesh) -> Program:
    r = config.rl
    layout = rl_layout(config, mesh)
    shards = parallel.batch_shards(mesh, layout.rules)
    rows, length = rl_update_rows(config, shards)
    accum = micro_batch_count(r.grad_accum_steps, mesh, rows // shards, length)
    dtypes = {"tokens": jnp.int32, "positions": jnp.int32, "segment_ids": jnp.int32, "response": jnp.bool_}
    batch = _batch(layout, {k: dtypes.get(k, jnp.float32) for k in BATCH_KEYS}, rows, length)
    step = make_update_step(layout, r, accum, config.optim.logits_chunk_tokens)
    anchor = layout.abstract_trained()  # a copy of the params, or with LoRA of the adapters
    return Program(
        name="rl_update",
        jitted=step,
        args=step_args(layout, batch),
        shape=f"{rows} rows x {length} tokens, {accum} micro-batches",
        loop_trips=accum,
        model_flops=rows * (length - 1) * layout.model_config.flops_per_token(length - 1),
        resident_bytes=device_bytes(anchor),
        resident="the anchor's adapters" if layout.lora else "the anchor's parameters",
        micro_rows=rows // accum // shards,
        accum_key="rl.grad_accum_steps",
        length_key="rl.sampling.max_new_tokens",
    )


def _sharded_cache(cfg, rows: int, slots: int, mesh: Mesh, rules: dict):
    """An abstract KVCache with the sampler's shardings: keys and values over (batch, kv_heads)."""
    cache = jax.eval_shape(lambda: model_lib.KVCache.empty(cfg, rows, slots))
    kv = NamedSharding(mesh, parallel.partition_spec(("batch", "kv_heads", None, None), rules, mesh=mesh))
    pos = NamedSharding(mesh, parallel.partition_spec(("batch", None), rules, mesh=mesh))

    def place(x, sharding):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    shardings = model_lib.KVCache(
        k=(kv,) * len(cache.k), v=(kv,) * len(cache.v), key_pos_BS=pos, index=parallel.replicated(mesh)
    )
    return jax.tree.map(place, cache, shardings), shardings


def decode_program(config, mesh: Mesh) -> Program:
    r = config.rl
    layout = rl_layout(config, mesh)
    cfg, rules = layout.model_config, layout.rules
    shards = parallel.batch_shards(mesh, rules)
    prompts = -(-bucket(r.prompts_per_step, minimum=1) // shards) * shards  # as Sampler.__call__ pads them
    rows, width = prompts * r.sampling.num_samples, bucket(config.sampling.max_prompt_len)
    slots = stage_ends(r.sampling.max_new_tokens, config.sampling.stage_tokens)[-1]
    cache, cache_sh = _sharded_cache(cfg, rows, slots, mesh, rules)
    prompt_cache, prompt_sh = _sharded_cache(cfg, prompts, width, mesh, rules)
    row_sh = NamedSharding(mesh, parallel.partition_spec(("batch",), rules, mesh=mesh))
    u_sh = NamedSharding(mesh, parallel.partition_spec(("batch", None), rules, mesh=mesh))
    strategy = strategy_for(r.sampling)

    def step(params, cache, prompt_cache, last_N, position_N, u_N1):
        """The body of the sampler's decode loop (sampling.decode's next_token and emit)."""
        logits, cache = model_lib.forward(cfg, params, last_N[:, None], position_N[:, None], None, cache, prompt_cache)
        token = choose_with_uniforms(u_N1, logits[:, 0], strategy)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits[:, 0], axis=-1), token[:, None], axis=-1)[:, 0]
        return token, logp, cache

    jitted = jax.jit(
        step,
        in_shardings=(layout.param_shardings, cache_sh, prompt_sh, row_sh, row_sh, u_sh),
        out_shardings=(row_sh, row_sh, cache_sh),
        donate_argnums=1,
    )
    args = (
        sampler_params(layout),
        cache,
        prompt_cache,
        jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=row_sh),
        jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=row_sh),
        jax.ShapeDtypeStruct((rows, 1), jnp.float32, sharding=u_sh),
    )
    if layout.lora:  # the merged weights are the argument; the base and all the adapters stay
        held = (layout.abstract_params(), layout.abstract_state(), layout.abstract_trained())
        resident_bytes = sum(map(device_bytes, held))
        resident = "the base, the adapters with their optimizer state and the anchor's adapters (during RL)"
    else:  # the train state less its params (an argument here) plus the anchor, as large as the params
        resident_bytes = device_bytes(layout.abstract_state())
        resident = "the optimizer state and the anchor (during RL)"
    return Program(
        name="decode_step",
        jitted=jitted,
        args=args,
        shape=f"{rows} rows ({prompts} prompts x {r.sampling.num_samples}), cache {width} + {slots} tokens",
        loop_trips=1,
        # a forward pass is a third of a training step's FLOPs per token
        model_flops=rows * cfg.flops_per_token(width + slots) / 3,
        resident_bytes=resident_bytes,
        resident=resident,
        kv_cache_bytes=device_bytes(cache) + device_bytes(prompt_cache),
    )


def sampler_params(layout: StateLayout) -> dict:
    """The abstract weights the sampler runs with: the params, or with LoRA the merged ones (in
    the compute dtype), placed like the params."""
    if not layout.lora:
        return layout.abstract_params()
    shapes = jax.eval_shape(
        lambda base, adapters: model_params(layout, adapters, base), layout.abstract_params(), layout.abstract_trained()
    )
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, layout.param_shardings
    )


PROGRAMS = {"sft_step": sft_program, "rl_update": rl_update_program, "decode_step": decode_program}
