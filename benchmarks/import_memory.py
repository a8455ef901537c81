"""Peak host memory of importing a Hugging Face checkpoint, against the checkpoint's size.

Writes a random Llama-shaped checkpoint (bf16, sharded safetensors with an index; ~310 MB at the
default shape), then imports it in fresh processes, each measuring its own peak resident set
(VmHWM, reset after JAX has started, so only the import counts):

    load_hf   t1jax.model.load_hf: each device reads only its block of each tensor
    import    t1jax import's body (load_hf + the Orbax checkpoint of the run directory)
    naive     for reference: every shard read whole (safetensors.numpy.load_file), converted, placed

On a CPU the params themselves live in host memory, so the peak includes them: `overhead_bytes`
is what the import needs beyond the params it returns (peak - params).

    python benchmarks/import_memory.py [--layers 8 --d-model 1024 --vocab 32000 --dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _status() -> dict:
    fields = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def write_checkpoint(directory: pathlib.Path, args) -> dict:
    """A random Llama-shaped checkpoint in bf16 shards of at most args.shard_mb MB."""
    import ml_dtypes
    import numpy as np

    from t1jax.model.hf.safetensors_io import write_sharded

    d, layers, heads, kv, f, v = args.d_model, args.layers, args.heads, args.kv_heads, args.mlp, args.vocab
    h = d // heads
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": v,
        "hidden_size": d,
        "intermediate_size": f,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "rope_theta": 500000.0,
        "torch_dtype": "bfloat16",
    }
    shapes = {"model.embed_tokens.weight": (v, d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (d,),
                p + "self_attn.q_proj.weight": (heads * h, d),
                p + "self_attn.k_proj.weight": (kv * h, d),
                p + "self_attn.v_proj.weight": (kv * h, d),
                p + "self_attn.o_proj.weight": (d, heads * h),
                p + "post_attention_layernorm.weight": (d,),
                p + "mlp.gate_proj.weight": (f, d),
                p + "mlp.up_proj.weight": (f, d),
                p + "mlp.down_proj.weight": (d, f),
            }
        )
    shapes["model.norm.weight"] = (d,)
    shapes["lm_head.weight"] = (v, d)
    rng = np.random.default_rng(0)
    bf16 = np.dtype(ml_dtypes.bfloat16)

    def make(shape):
        return lambda: (rng.standard_normal(shape, np.float32) * 0.02).astype(bf16)

    entries = [(key, shape, bf16, make(shape)) for key, shape in shapes.items()]
    directory.mkdir(parents=True, exist_ok=True)
    index = write_sharded(directory, entries, args.shard_mb * 2**20)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return {
        "config": config,
        "checkpoint_bytes": index["metadata"]["total_size"],
        "shards": len(set(index["weight_map"].values())),
        "num_params": sum(int(np.prod(s)) for s in shapes.values()),
    }


def child(mode: str, directory: str, dtype: str) -> dict:
    """Runs one import in this (fresh) process and reports its memory."""
    import jax
    import numpy as np

    from t1jax.apps.convert import import_checkpoint
    from t1jax.model.hf import load_hf

    jax.devices()
    jax.numpy.zeros(1).block_until_ready()
    before = _status()
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: only the import counts
    start = time.perf_counter()
    if mode == "load_hf":
        _, params = load_hf(directory, dtype)
    elif mode == "import":
        out = tempfile.mkdtemp(prefix="t1jax-import-")
        import_checkpoint(directory, out + "/run", dtype)
        params = None
    else:
        params = _naive(directory, dtype)
    if params is not None:
        jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    after = _status()
    param_bytes = 0
    if params is not None:
        param_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(params))
    else:  # import: the params were built, saved and dropped; count what they were
        from t1jax.model.hf import model_config_from_hf, read_hf_config

        mc = model_config_from_hf(read_hf_config(directory), dtype)
        param_bytes = mc.num_params() * np.dtype(mc.params_dtype).itemsize
    peak = after["VmHWM"]
    return {
        "mode": mode,
        "seconds": round(seconds, 2),
        "rss_before_bytes": before["VmRSS"],
        "peak_rss_bytes": peak,
        "peak_rss_above_start_bytes": peak - before["VmRSS"],
        "param_bytes": param_bytes,
        "overhead_bytes": peak - before["VmRSS"] - param_bytes,
        "rss_after": after,
    }


def _naive(directory: str, dtype: str):
    """Reads every shard whole, converts each tensor in numpy and places the params: what an
    importer without block reads would do."""
    import jax
    import numpy as np
    from safetensors.numpy import load_file

    from t1jax.model.hf import hf_shardings, model_config_from_hf, read_hf_config
    from t1jax.model.hf.names import get_path, set_path, tensors

    mc = model_config_from_hf(read_hf_config(directory), dtype)
    shardings = hf_shardings(mc)
    state = {}
    for shard in sorted(pathlib.Path(directory).glob("model-*.safetensors")):
        state.update(load_file(shard))
    params: dict = {}
    for spec in tensors(mc, "llama"):
        array = np.ascontiguousarray(_from_hf(spec, state[spec.key], mc), dtype=mc.params_dtype)
        set_path(params, spec.path, jax.device_put(array, get_path(shardings, spec.path)))
    return params


def _from_hf(spec, hf, mc):
    h = mc.dim_per_head
    if spec.layout == "transpose":
        return hf.T
    if spec.layout == "heads_in":
        return hf.reshape(-1, h, hf.shape[1]).transpose(2, 0, 1)
    if spec.layout == "heads_out":
        return hf.reshape(hf.shape[0], -1, h).transpose(1, 2, 0)
    if spec.layout == "heads_bias":
        return hf.reshape(-1, h)
    return hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=2816)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--shard-mb", type=int, default=100)
    parser.add_argument("--dtype", default="bfloat16", help="the imported params' dtype")
    parser.add_argument("--modes", default="load_hf,import,naive")
    parser.add_argument("--dir", default="", help="write the checkpoint here (default: a temporary directory)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.dtype)))
        return
    from common import machine_info

    with tempfile.TemporaryDirectory(prefix="t1jax-hf-") as tmp:
        directory = pathlib.Path(args.dir or tmp) / "checkpoint"
        print(f"writing a random checkpoint to {directory}", file=sys.stderr)
        checkpoint = write_checkpoint(directory, args)
        runs = []
        for mode in args.modes.split(","):
            print(f"importing ({mode})", file=sys.stderr)
            cmd = [sys.executable, __file__, "--child", mode, "--dir", str(directory), "--dtype", args.dtype]
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    size = checkpoint["checkpoint_bytes"]
    for run in runs:
        run["peak_above_start_over_checkpoint"] = round(run["peak_rss_above_start_bytes"] / size, 3)
        run["overhead_over_checkpoint"] = round(run["overhead_bytes"] / size, 3)
    report = {
        "benchmark": "import_memory",
        "checkpoint": {k: v for k, v in checkpoint.items() if k != "config"},
        "shape": {k: checkpoint["config"][k] for k in ("vocab_size", "hidden_size", "num_hidden_layers")},
        "dtype": args.dtype,
        "runs": runs,
        "machine": machine_info(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
