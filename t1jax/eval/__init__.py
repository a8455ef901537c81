"""Evaluation: scoring sampled answers and reporting the results.

- `metrics`: pass@k (unbiased estimator), maj@k (majority vote), length statistics, `summarize`.
- `report`: GitHub markdown tables and atomic, numpy-safe JSON files.
- `plot`: PNG line plots (inference-scaling and training curves); imports matplotlib, so import it explicitly.

Nothing is re-exported here so that `import t1jax.eval` stays cheap (no matplotlib, no JAX).
"""
