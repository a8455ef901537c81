"""`t1jax eval`'s core: n samples per problem -> grades -> pass@1, maj@k, pass@k, lengths."""

from __future__ import annotations

from t1jax.eval.generation import Generate
from t1jax.eval.metrics import summarize
from t1jax.eval.suites import Suite


def default_ks(num_samples: int) -> list[int]:
    """Powers of two up to n, and n itself: the k of maj@k and pass@k."""
    ks = [k for k in (2, 4, 8, 16, 32, 64) if k < num_samples]
    return ks + [num_samples] if num_samples > 1 else []


def evaluate(suite: Suite, generate: Generate, num_samples: int, ks: list[int] | None = None):
    """(summary, per-problem records) of `num_samples` responses to every problem of `suite`."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    samples = generate([p["prompt"] for p in suite.problems], num_samples)
    items = [i for i, row in enumerate(samples) for _ in row]
    texts = [g.text for row in samples for g in row]
    correct = iter(suite.grade(items, texts))
    records = []
    for problem, row in zip(suite.problems, samples):
        records.append(
            {
                "id": problem["id"],
                "correct": [bool(next(correct)) for _ in row],
                "keys": [suite.answer_key(g.text) for g in row],
                "lengths": [g.num_tokens for g in row],
                "truncated": [g.truncated for g in row],
                "responses": [g.text for g in row],
            }
        )
    summary = {"suite": suite.name, **summarize(records, default_ks(num_samples) if ks is None else ks)}
    if hasattr(suite, "audit"):  # built-in tasks: is the self-verification in the responses real?
        summary["verification"] = suite.audit(items, texts)
    return summary, records
