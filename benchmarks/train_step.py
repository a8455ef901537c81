"""SFT train-step throughput of t1jax against this machine's matmul peak and a PyTorch peer.

Measures, in one run and on the same machine:
  1. the float32 matmul peak: a jitted N x N `jnp.dot`, best of several repetitions;
  2. t1jax's jitted SFT step (the one `t1jax sft` runs, AdamW and clipping included) at the
     built-in demo model shape: tokens/s, achieved FLOP/s and fraction of the matmul peak; in the
     micro-batches `t1jax sft` splits the batch into (sft.grad_accum_steps, automatic by default),
     and for comparison as one whole batch;
  3. the peer: Hugging Face `LlamaForCausalLM` of the same shape trained with `torch.optim.AdamW`
     on the CPU, same batch, sequence length and step counts, as one whole batch and in t1jax's
     micro-batches (gradients accumulated), the faster of the two being the peer's figure
     (needs the `bench` extra; skipped with a note on stderr when torch or transformers is missing).
FLOPs use one formula for both, `ModelConfig.flops_per_token` (6 * matmul weights + attention).
Timing is wall clock around the steps after warm-up; compilation is reported as compile_s.
Each section also reports `other_load`: the cores that other processes kept busy meanwhile (on a
shared machine, figures taken with other_load well above 0 are slowed by the neighbours).

Run:  python benchmarks/train_step.py [--batch 32 --seq 256 --steps 10 --warmup 2]
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from common import llama_config, machine_info, matmul_peak  # noqa: I001 (benchmarks/ is the script directory)

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.model import ModelConfig
from t1jax.train.optimizer import learning_rate_schedule, make_optimizer
from t1jax.train.sft_step import make_sft_step, sft_micro_batches
from t1jax.train.state import make_layout


class OtherLoad:
    """Measures how many cores other processes kept busy during the with-block (from /proc/stat), since a
    shared machine's neighbours slow every figure here; `cores` stays None where /proc/stat is missing."""

    def __enter__(self):
        self.cores, self._start = None, self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        if self._start and end:
            (busy0, own0, t0), (busy1, own1, t1) = self._start, end
            self.cores = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0), 2)

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                ticks = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        own = sum(os.times()[:4])
        return busy, own, time.perf_counter()


def demo_model_config(batch: int, seq: int):
    """The t1jax config with the built-in demo model at this batch and sequence length."""
    cfg = config_lib.load(None, {"sft.seq_len": seq, "sft.batch_size": batch})
    return cfg, ModelConfig.from_config(cfg.model)


def random_tokens(batch: int, seq: int, vocab: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, vocab, size=(batch, seq + 1), dtype=np.int32)


def summarize(step_times: list[float], compile_s: float, tokens_per_step: int, flops_per_token: int, peak: float):
    mean = sum(step_times) / len(step_times)
    tokens_per_s = tokens_per_step / mean
    return {
        "compile_s": compile_s,
        "step_s_mean": mean,
        "step_s_median": sorted(step_times)[len(step_times) // 2],
        "step_s_min": min(step_times),
        "tokens_per_s": tokens_per_s,
        "flops_per_s": flops_per_token * tokens_per_s,
        "fraction_of_peak": flops_per_token * tokens_per_s / peak,
    }


def t1jax_micro_batches(batch: int, seq: int) -> int:
    """The micro-batches `t1jax sft` splits this batch into with the default config."""
    cfg, _ = demo_model_config(batch, seq)
    mesh = parallel.make_mesh(cfg.mesh)
    return sft_micro_batches(cfg.sft, mesh, parallel.rules_table(cfg.mesh.rules))


def bench_t1jax(batch: int, seq: int, steps: int, warmup: int, peak: float, micro_batches: int) -> dict:
    """t1jax's jitted SFT step, built as the training loop builds it, in `micro_batches`."""
    cfg, mc = demo_model_config(batch, seq)
    mesh, rules = parallel.make_mesh(cfg.mesh), parallel.rules_table(cfg.mesh.rules)
    total_steps = warmup + steps
    layout = make_layout(mc, make_optimizer(cfg.optim, total_steps), mesh, rules)
    state = layout.init(0)
    step = make_sft_step(layout, learning_rate_schedule(cfg.optim, total_steps), micro_batches)
    tokens = random_tokens(batch, seq, mc.vocab_size)
    host_batch = {"tokens": tokens, "loss_mask": np.ones_like(tokens)}
    data = parallel.to_global(host_batch, parallel.batch_sharding(mesh, rules))

    start = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - start
    times = []
    with OtherLoad() as load:
        for i in range(warmup + steps):
            start = time.perf_counter()
            state, metrics = compiled(state, data)
            metrics["loss"].block_until_ready()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    result = summarize(times, compile_s, batch * seq, mc.flops_per_token(seq), peak)
    return {
        "micro_batches": micro_batches,
        "final_loss": float(metrics["loss"]),
        "num_params": mc.num_params(),
        **result,
        "other_load": load.cores,
    }


def torch_peer(mc: ModelConfig, seq: int):
    """A transformers Llama of t1jax's shape and its AdamW (t1jax's default hyperparameters)."""
    import torch
    import transformers

    config = llama_config(mc, seq)
    model = transformers.LlamaForCausalLM(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    return model, opt


def bench_torch(batch: int, seq: int, steps: int, warmup: int, peak: float, micro_batches: int) -> dict:
    """The same step in PyTorch eager: forward, cross-entropy, backward (per micro-batch, the
    gradients accumulated), clip, AdamW."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        reason = f"{e} (install the bench extra: pip install -e '.[bench]')"
        print(f"torch peer skipped: {reason}", file=sys.stderr)
        return {"skipped": reason}
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    _, mc = demo_model_config(batch, seq)
    model, opt = torch_peer(mc, seq)
    tokens = torch.from_numpy(random_tokens(batch, seq, mc.vocab_size)).long()

    def step():
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for part in tokens.chunk(micro_batches):
            logits = model(input_ids=part[:, :-1]).logits
            targets = part[:, 1:].reshape(-1)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets)
            (loss / micro_batches).backward()
            total += loss.item() / micro_batches
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return total

    times = []
    with OtherLoad() as load:
        for i in range(warmup + steps):
            start = time.perf_counter()
            loss = step()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    result = summarize(times, 0.0, batch * seq, mc.flops_per_token(seq), peak)
    return {
        "micro_batches": micro_batches,
        "final_loss": loss,
        "num_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "attn_implementation": model.config._attn_implementation,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **result,
        "other_load": load.cores,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--skip-torch", action="store_true", help="measure t1jax only")
    args = p.parse_args(argv)

    with OtherLoad() as load:
        peak = matmul_peak(args.matmul_n)
    peak["other_load"] = load.cores
    shape_args = (args.batch, args.seq, args.steps, args.warmup, peak["flops_per_s"])
    micro = t1jax_micro_batches(args.batch, args.seq)
    t1 = bench_t1jax(*shape_args, micro)
    t1_whole = bench_t1jax(*shape_args, 1) if micro > 1 else t1
    peers = [{"skipped": "--skip-torch"}] if args.skip_torch else [bench_torch(*shape_args, 1)]
    if micro > 1 and "skipped" not in peers[0]:
        peers.append(bench_torch(*shape_args, micro))
    peer = max(peers, key=lambda p: p.get("tokens_per_s", 0))
    shape = {"batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup}
    report = {
        "benchmark": "sft_train_step",
        "machine": machine_info(),
        "shape": {**shape, "tokens_per_step": args.batch * args.seq},
        "flops_per_token": demo_model_config(args.batch, args.seq)[1].flops_per_token(args.seq),
        "matmul_peak": peak,
        "t1jax": t1,
        "t1jax_whole_batch": t1_whole,
        "torch": peer,
        "torch_runs": peers,
    }
    if "tokens_per_s" in peer:
        report["t1jax_over_torch_tokens_per_s"] = t1["tokens_per_s"] / peer["tokens_per_s"]
        report["t1jax_whole_batch_over_torch_tokens_per_s"] = t1_whole["tokens_per_s"] / peer["tokens_per_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
