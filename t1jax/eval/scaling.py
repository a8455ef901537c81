"""Inference scaling without a verifier (docs/recipe.md, section 3).

For each token budget B: cut every reasoning trace after B tokens, append the answer-forcing
suffix, decode the answer greedily and grade it. A problem may have several traces (sampled):
its accuracy at B is then the share of them answered right, which varies far less from one
training run to the next than a single greedy trace does. The reasoning of a trace is everything
before its first answer marker, so a cut never lands inside an answer the model already wrote,
and the suffix is appended whole, after the cut.
"""

from __future__ import annotations

import numpy as np

from t1jax.data.chat import format_prompt
from t1jax.data.tokenizer import Tokenizer
from t1jax.eval.generation import ContinueIds, Generation
from t1jax.eval.suites import Suite


def reasoning_of(text: str, marker: str) -> str:
    """The part of a response before its first answer marker (all of it if there is none)."""
    at = text.find(marker)
    return (text if at < 0 else text[:at]).rstrip()


def forced_prompts(
    tokenizer: Tokenizer,
    prompt: str,
    reasoning_ids: list[int],
    budgets: list[int],
    suffix: str,
    prompt_format: str = "plain",
) -> list[list[int]]:
    """For each budget: the prompt (in `prompt_format`), the first `budget` reasoning tokens, then
    the suffix. The cut reasoning and the suffix are encoded as one text, as a response is in training."""
    prompt_ids = format_prompt(tokenizer, prompt, prompt_format)
    return [prompt_ids + tokenizer.encode(tokenizer.decode(reasoning_ids[:b]) + suffix) for b in budgets]


def scaling_curve(
    suite: Suite,
    tokenizer: Tokenizer,
    traces: list[list[Generation]],
    continue_ids: ContinueIds,
    budgets: list[int],
    prompt_format: str = "plain",
) -> dict:
    """Accuracy at each budget of one model, from the same number of reasoning traces for every
    problem of `suite` (traces[i]: problem i's); with several, accuracy is the mean over them."""
    if len(traces) != len(suite.problems):
        raise ValueError(f"traces for {len(traces)} problems, the suite has {len(suite.problems)}")
    n = len(traces[0]) if traces else 0
    if n < 1 or any(len(row) != n for row in traces):
        counts = sorted({len(row) for row in traces})
        raise ValueError(f"every problem needs the same number (>= 1) of traces, got counts {counts}")
    if not budgets or any(b < 0 for b in budgets) or sorted(set(budgets)) != list(budgets):
        raise ValueError(f"budgets must be distinct non-negative increasing token counts, got {budgets}")
    reasoning = [[tokenizer.encode(reasoning_of(t.text, suite.answer_marker)) for t in row] for row in traces]
    prompts, items = [], []
    for i, (problem, rows) in enumerate(zip(suite.problems, reasoning)):
        for ids in rows:
            prompts += forced_prompts(tokenizer, problem["prompt"], ids, budgets, suite.forcing_suffix, prompt_format)
            items += [i] * len(budgets)
    # Shortest first: a sampler call pads its prompts to the longest of them, so prompts of similar
    # length together prefill ~3x fewer positions than budgets mixed in every call.
    order = sorted(range(len(prompts)), key=lambda j: len(prompts[j]))
    answers = [None] * len(prompts)
    for j, answer in zip(order, continue_ids([prompts[j] for j in order])):
        answers[j] = answer
    correct = np.array(suite.grade(items, [suite.forcing_suffix + a.text for a in answers]), bool)
    correct = correct.reshape(len(traces), n, len(budgets))
    used = np.array([[[min(b, len(ids)) for b in budgets] for ids in rows] for rows in reasoning], float)
    return {
        "budgets": list(budgets),
        "traces_per_problem": n,
        "accuracy": correct.mean(axis=(0, 1)).tolist(),
        "mean_reasoning_tokens": used.mean(axis=(0, 1)).tolist(),
        "trace_reasoning_tokens": float(np.mean([len(ids) for rows in reasoning for ids in rows])),
        # per problem, the share of its traces right at the largest budget minus at the smallest
        # (in [-1, 1]): what a paired comparison of two models' gains needs
        "gain_by_problem": (correct[:, :, -1].mean(axis=1) - correct[:, :, 0].mean(axis=1)).tolist(),
    }


def scaling_gain(curve: dict) -> float:
    """Accuracy at the largest budget minus at the smallest."""
    return curve["accuracy"][-1] - curve["accuracy"][0]
