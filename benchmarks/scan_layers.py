"""Scanned against unrolled layers, and what each remat policy holds.

For a deep, narrow model (default 32 layers), compiles the gradient of the next-token loss with
the layers unrolled and scanned (model.scan_layers) and reports each compile time, the loss and
the largest gradient difference between the two forms (one run of each on the same weights),
then XLA's memory analysis of the scanned gradient under every model.remat policy (temporaries:
the activations the backward pass keeps, and what it recomputes them into).

Run:  python benchmarks/scan_layers.py [--layers 32 --d-model 256 --rows 4 --length 512]
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
from common import machine_info  # noqa: I001 (benchmarks/ is the script directory)

from t1jax.config.model import REMAT_POLICIES
from t1jax.model import ModelConfig, forward, init_params, stack_layers


def loss(config, params, tokens):
    logits, _ = forward(config, params, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    args = parser.parse_args()
    unrolled = ModelConfig(
        vocab_size=512, d_model=args.d_model, num_layers=args.layers, num_heads=8, num_kv_heads=4,
        mlp_dim=3 * args.d_model, scan_layers="false",
    )  # fmt: skip
    scanned = dataclasses.replace(unrolled, scan_layers="true")
    params = init_params(unrolled, 0)
    tokens = jax.random.randint(jax.random.key(1), (args.rows, args.length + 1), 0, unrolled.vocab_size)
    forms = {}
    for name, config, weights in (("unrolled", unrolled, params), ("scanned", scanned, stack_layers(params))):
        start = time.perf_counter()
        compiled = jax.jit(jax.value_and_grad(lambda p, t, c=config: loss(c, p, t))).lower(weights, tokens).compile()
        seconds = time.perf_counter() - start
        value, grads = compiled(weights, tokens)
        forms[name] = {"compile_s": round(seconds, 2), "loss": float(value), "grads": grads}
    differences = jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max()),
        stack_layers(forms["unrolled"].pop("grads")),
        forms["scanned"].pop("grads"),
    )
    remat = {}
    for policy in REMAT_POLICIES:
        config = dataclasses.replace(scanned, remat=policy)
        grad = jax.jit(jax.grad(lambda p, t, c=config: loss(c, p, t)))
        analysis = grad.lower(stack_layers(params), tokens).compile().memory_analysis()
        remat[policy] = {"temporaries_mib": round(analysis.temp_size_in_bytes / 2**20, 1)}
    report = {
        "benchmark": "scan_layers",
        "machine": machine_info(),
        "shape": {"layers": args.layers, "d_model": args.d_model, "rows": args.rows, "length": args.length},
        "forms": forms,
        "compile_time_unrolled_over_scanned": round(forms["unrolled"]["compile_s"] / forms["scanned"]["compile_s"], 2),
        "loss_difference": abs(forms["unrolled"]["loss"] - forms["scanned"]["loss"]),
        "max_gradient_difference": max(jax.tree.leaves(differences)),
        "remat_scanned": remat,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
