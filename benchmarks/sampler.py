"""Sampler throughput: the KV-cache sampler against a recompute-everything sampler, this
machine's float32 matmul peak and Hugging Face `generate`, all measured in one run.

Figures (the base config's model, or with --model demo the smaller one that `t1jax demo` trains
and samples in its RL; random weights, prompts of 32 tokens, no stop token so every sample runs to
the limit):
  - t1jax tokens/s for batch {64, 256} x new tokens {128, 512}, with achieved FLOP/s
    (2 * matmul weights + 4 * layers * heads * head_dim * context, per generated token) as a
    fraction of the matmul peak; at batch 64 also the same sampler decoding in one stage
    (every step attends over the whole cache) instead of the default stages;
  - the recompute sampler (full forward over the whole static-shape sequence buffer at every
    step, no cache): its cost per step is constant, so a few steps give its exact rate. Run
    at 128 new tokens only, where the goal is stated (at 512 its full forwards dominate the
    run time); other rows say so;
  - oversampling as RL does it: 8 prompts x 16 samples against 128 distinct prompts (same rows,
    same new tokens), with prompts of 32 tokens (and 256 without --quick): the ratio is what
    sharing a prompt's cache among its samples buys;
  - on a CPU, the same sampler on a data-parallel mesh of one XLA host device per core (batch
    64 x 128; mesh.data=-1, mesh.fsdp=1: host devices share memory, so sharding the params
    saves nothing and costs gathers, and each device decodes its rows in loops of its own):
    XLA's CPU backend runs a decode step's small ops on one core, so splitting the batch over
    per-core devices is how decoding uses the machine. The
    script asks for os.cpu_count() host devices (XLA_FLAGS) unless XLA_FLAGS already sets a
    count; the other rows run on one device;
  - the weight matmuls of a decode step alone at batch 64, on one device (no attention, norms,
    sampling or cache writes): a ceiling on any sampler's tokens/s with XLA's matmuls here;
  - transformers `generate` (PyTorch, CPU, all cores) on a Llama of the same shape with sampling
    at batch 64 x 128 (the `bench` extra; skipped with a note when missing).

Every configuration prints a line to stderr when it starts and when it ends.

Run:  python benchmarks/sampler.py [--quick] [--model demo]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):  # before jax starts
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={os.cpu_count()}"
    ).strip()

import jax
import jax.numpy as jnp
import numpy as np
from common import llama_config, machine_info, matmul_peak  # noqa: I001 (benchmarks/ is the script's directory)

from t1jax import config as config_lib
from t1jax.apps.demo.config import demo_config
from t1jax.model import ModelConfig, forward, init_params
from t1jax.sampling import Sample, Sampler, choose
from t1jax.train.state import layout_from_config

PROMPT_LEN = 32
# The goals compare rows at batch 64 x 128 new tokens (t1jax on one device and on the host mesh,
# and `generate`): each takes the best of this many timed runs, since single runs of one
# configuration on a shared 2-core machine differed by up to 2x. Other rows take the best of
# TIMED_RUNS; a ratio between two rows (e.g. stages over one stage) uses the same count for both.
GOAL_TIMED_RUNS = 5
TIMED_RUNS = 2


def load_config(model: str, overrides: dict | None = None):
    """The config whose model is benchmarked: "default" (the base config's model, the shape the
    goals were set at) or "demo" (the model `t1jax demo` trains and samples in its RL)."""
    return config_lib.load(None, overrides or {}, default=demo_config if model == "demo" else None)


def decode_flops_per_token(mc: ModelConfig, context: float) -> float:
    d, h, n, kv, f = mc.d_model, mc.dim_per_head, mc.num_heads, mc.num_kv_heads, mc.mlp_dim
    weights = mc.num_layers * (d * n * h + 2 * d * kv * h + n * h * d + 3 * d * f) + d * mc.vocab_size
    return 2 * weights + 4 * mc.num_layers * n * h * context


def prompts(batch: int, vocab: int, length: int = PROMPT_LEN) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [[2] + rng.integers(4, vocab, length - 1).tolist() for _ in range(batch)]


def bench_oversampling(mc, params, prompt_len: int, num_prompts: int = 8, k: int = 16, new_tokens: int = 128) -> dict:
    """K samples of each of P prompts against P*K distinct prompts: the same rows and tokens,
    but the K samples share their prompt's cache (read once per prompt)."""
    rates = {}
    for name, (p, samples) in {"shared": (num_prompts, k), "distinct": (num_prompts * k, 1)}.items():
        sampler = Sampler(mc, Sample(temperature=1.0), max_new_tokens=new_tokens, num_samples=samples)
        batch_prompts = prompts(p, mc.vocab_size, prompt_len)
        sampler(params, batch_prompts, jax.random.key(0))  # compiles
        times = []
        for rep in range(2):
            start = time.perf_counter()
            out = sampler(params, batch_prompts, jax.random.key(rep + 1))
            times.append(time.perf_counter() - start)
        rates[name] = int(out.lengths.sum()) / min(times)
    return {
        "prompts": num_prompts,
        "samples_per_prompt": k,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "tokens_per_s": rates["shared"],
        "distinct_prompts_tokens_per_s": rates["distinct"],
        "over_distinct_prompts": rates["shared"] / rates["distinct"],
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_t1jax(
    mc,
    params,
    batch: int,
    new_tokens: int,
    peak: float,
    stage_tokens: int = 0,
    layout=None,
    timed_runs: int = TIMED_RUNS,
) -> dict:
    sampler = Sampler(
        mc, Sample(temperature=1.0), max_new_tokens=new_tokens, num_samples=1, stage_tokens=stage_tokens, layout=layout
    )
    batch_prompts = prompts(batch, mc.vocab_size)
    start = time.perf_counter()
    sampler(params, batch_prompts, jax.random.key(0))  # compiles
    compile_s = time.perf_counter() - start
    # More timed runs of a long configuration add minutes and little information.
    reps = timed_runs if compile_s < 20 else 1
    times = []
    for rep in range(reps):
        start = time.perf_counter()
        out = sampler(params, batch_prompts, jax.random.key(rep + 1))
        times.append(time.perf_counter() - start)
    generated = int(out.lengths.sum())
    tokens_per_s = generated / min(times)
    flops = decode_flops_per_token(mc, PROMPT_LEN + new_tokens / 2) * tokens_per_s
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "decode_stages": len(sampler.stages),
        "tokens_per_s": tokens_per_s,
        "seconds": min(times),
        "timed_runs": reps,
        "compile_and_first_s": compile_s,
        "flops_per_s": flops,
        "fraction_of_peak": flops / peak,
    }


def bench_host_mesh(model: str, params, peak: float, batch: int = 64, new_tokens: int = 128) -> dict:
    """The sampler on a data-parallel mesh over all host devices (see the module docstring)."""
    if jax.default_backend() != "cpu" or jax.device_count() == 1:
        return {"skipped": f"needs several CPU devices; have {jax.device_count()} {jax.default_backend()} device(s)"}
    layout = layout_from_config(load_config(model, {"mesh.data": -1, "mesh.fsdp": 1}), total_steps=1)
    sharded = jax.device_put(params, layout.shardings.params)
    row = bench_t1jax(layout.model_config, sharded, batch, new_tokens, peak, layout=layout, timed_runs=GOAL_TIMED_RUNS)
    return {"devices": jax.device_count(), "mesh": dict(layout.mesh.shape), **row}


def bench_matmul_floor(mc, batch: int = 64, steps: int = 200) -> dict:
    """A decode step's weight matmuls and nothing else (no attention over the cache, norms, RoPE,
    sampling or cache writes), `steps` of them in one jitted loop on one device: the tokens/s that
    no sampler built on XLA's matmuls can beat on this machine at this batch."""
    d, h, f = mc.d_model, mc.dim_per_head, mc.mlp_dim
    shapes = [(d, mc.num_heads * h), (d, mc.num_kv_heads * h), (d, mc.num_kv_heads * h)]
    shapes += [(mc.num_heads * h, d), (d, f), (d, f), (f, d)]
    keys = iter(jax.random.split(jax.random.key(0), len(shapes) * mc.num_layers + 2))
    weights = [[jax.random.normal(next(keys), s) * s[0] ** -0.5 for s in shapes] for _ in range(mc.num_layers)]
    embedding = jax.random.normal(next(keys), (d, mc.vocab_size)) * d**-0.5

    @jax.jit
    def run(x, weights, embedding):
        def step(_, x):
            for q, k, v, o, gate, up, down in weights:
                attended = (x @ q) + jnp.tile(x @ k + x @ v, mc.num_heads // mc.num_kv_heads)  # stands in for attention
                x = x + attended @ o
                x = x + (jax.nn.silu(x @ gate) * (x @ up)) @ down
            logits = x @ embedding
            return x * 0.5 + logits[:, :1] * 1e-3  # the next step depends on the logits

        return jax.lax.fori_loop(0, steps, step, x)

    x = jax.random.normal(next(keys), (batch, d))
    run(x, weights, embedding).block_until_ready()
    start = time.perf_counter()
    run(x, weights, embedding).block_until_ready()
    seconds = time.perf_counter() - start
    return {"batch": batch, "steps_timed": steps, "tokens_per_s": batch * steps / seconds}


def bench_recompute(mc, params, batch: int, new_tokens: int, steps: int) -> dict:
    """Each step runs the model over the whole (prompt + new_tokens) buffer without a cache."""
    width = PROMPT_LEN + new_tokens
    sample = Sample(temperature=1.0)

    @jax.jit
    def run(params, buffer, key):
        def body(i, carry):
            buffer, key = carry
            key, sub = jax.random.split(key)
            logits, _ = forward(mc, params, buffer)
            position = PROMPT_LEN - 1 + i
            token = choose(sub, jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False), sample)
            return jax.lax.dynamic_update_slice(buffer, token[:, None], (0, position + 1)), key

        return jax.lax.fori_loop(0, steps, body, (buffer, key))[0]

    buffer = np.zeros((batch, width), np.int32)
    buffer[:, :PROMPT_LEN] = np.asarray(prompts(batch, mc.vocab_size))
    run(params, buffer, jax.random.key(0)).block_until_ready()
    start = time.perf_counter()
    run(params, buffer, jax.random.key(1)).block_until_ready()
    seconds = time.perf_counter() - start
    return {"batch": batch, "new_tokens": new_tokens, "steps_timed": steps, "tokens_per_s": batch * steps / seconds}


def bench_transformers(mc, batch: int, new_tokens: int) -> dict:
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"transformers generate skipped: {e} (pip install -e '.[bench]')", file=sys.stderr)
        return {"skipped": f"{e}; install the bench extra"}
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    config = llama_config(mc, PROMPT_LEN + new_tokens)
    model = transformers.LlamaForCausalLM(config).eval()
    inputs = torch.tensor(prompts(batch, mc.vocab_size))
    kwargs = dict(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=0,
        eos_token_id=None,
    )
    with torch.no_grad():
        model.generate(inputs[:, :], **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
        times = []
        for _ in range(GOAL_TIMED_RUNS):  # the best of several, as for t1jax: one run is at the mercy of other load
            start = time.perf_counter()
            out = model.generate(inputs, **kwargs)
            times.append(time.perf_counter() - start)
        seconds = min(times)
    generated = (out.shape[1] - PROMPT_LEN) * batch
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "tokens_per_s": generated / seconds,
        "timed_runs": GOAL_TIMED_RUNS,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 64 x 128 new tokens only")
    parser.add_argument(
        "--model",
        choices=("default", "demo"),
        default="default",
        help="default: the base config's model (d_model 256, 8/4 heads); demo: the demo's (d_model 128, 4/2 heads)",
    )
    args = parser.parse_args(argv)
    mc = ModelConfig.from_config(load_config(args.model).model)
    params = jax.jit(init_params, static_argnums=(0, 1))(mc, 0)
    peak = matmul_peak(2048)["flops_per_s"]
    grid = [(64, 128)] if args.quick else [(64, 128), (64, 512), (256, 128), (256, 512)]
    t1jax_rows, recompute_rows = [], []
    for b, m in grid:
        log(f"t1jax sampler: batch {b}, {m} new tokens ...")
        runs = GOAL_TIMED_RUNS if (b, m) == (64, 128) else TIMED_RUNS
        row = bench_t1jax(mc, params, b, m, peak, timed_runs=runs)
        log(f"  {row['tokens_per_s']:.0f} tokens/s ({row['fraction_of_peak']:.1%} of peak)")
        if b == 64:
            log(f"t1jax sampler in one decode stage: batch {b}, {m} new tokens ...")
            one = bench_t1jax(mc, params, b, m, peak, stage_tokens=m, timed_runs=runs)
            log(f"  {one['tokens_per_s']:.0f} tokens/s")
            row["one_stage_tokens_per_s"] = one["tokens_per_s"]
            row["over_one_stage"] = row["tokens_per_s"] / one["tokens_per_s"]
        if m == 128:
            log(f"recompute sampler: batch {b}, {m} new tokens ...")
            # Its cost per step is constant: 512 sequences' worth of steps give a stable rate.
            recompute = bench_recompute(mc, params, b, m, steps=max(2, 512 // b))
            log(f"  {recompute['tokens_per_s']:.0f} tokens/s")
            row["over_recompute"] = row["tokens_per_s"] / recompute["tokens_per_s"]
        else:
            recompute = {"batch": b, "new_tokens": m, "skipped": "goal stated at 128 new tokens; not run here"}
        t1jax_rows.append(row)
        recompute_rows.append(recompute)
    oversampling = []
    for prompt_len in (PROMPT_LEN,) if args.quick else (PROMPT_LEN, 256):
        log(f"oversampling: 8 prompts of {prompt_len} tokens x 16 samples vs 128 distinct prompts ...")
        oversampling.append(bench_oversampling(mc, params, prompt_len))
        log(f"  {oversampling[-1]['over_distinct_prompts']:.2f}x")
    log(f"t1jax sampler on a mesh of {jax.device_count()} host devices: batch 64, 128 new tokens ...")
    base = next(r for r in t1jax_rows if (r["batch"], r["new_tokens"]) == (64, 128))
    host_mesh = bench_host_mesh(args.model, params, peak)
    if "tokens_per_s" in host_mesh:
        host_mesh["over_one_device"] = host_mesh["tokens_per_s"] / base["tokens_per_s"]
        log(f"  {host_mesh['tokens_per_s']:.0f} tokens/s ({host_mesh['over_one_device']:.2f}x one device)")
    log("weight matmuls of a decode step alone: batch 64 ...")
    floor = bench_matmul_floor(mc)
    floor["t1jax_fraction"] = base["tokens_per_s"] / floor["tokens_per_s"]
    log(f"  {floor['tokens_per_s']:.0f} tokens/s")
    log("transformers generate: batch 64, 128 new tokens ...")
    peer = bench_transformers(mc, 64, 128)
    report = {
        "benchmark": "sampler",
        "machine": machine_info(),
        "model": {
            "config": args.model,
            "layers": mc.num_layers,
            "d_model": mc.d_model,
            "heads": mc.num_heads,
            "kv_heads": mc.num_kv_heads,
            "mlp_dim": mc.mlp_dim,
            "vocab": mc.vocab_size,
            "prompt_len": PROMPT_LEN,
        },
        "matmul_peak_flops_per_s": peak,
        "t1jax": t1jax_rows,
        "oversampling": oversampling,
        "host_mesh": host_mesh,
        "recompute": recompute_rows,
        "matmul_floor": floor,
        "transformers_generate": peer,
        "t1jax_over_recompute_at_64x128": base["over_recompute"],
    }
    if "tokens_per_s" in peer:
        report["t1jax_over_transformers_at_64x128"] = base["tokens_per_s"] / peer["tokens_per_s"]
        if "tokens_per_s" in host_mesh:
            report["t1jax_host_mesh_over_transformers_at_64x128"] = host_mesh["tokens_per_s"] / peer["tokens_per_s"]
        report["matmul_floor_over_transformers_at_64"] = floor["tokens_per_s"] / peer["tokens_per_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing anything
    main()
