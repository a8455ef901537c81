"""Can the model compute its own checks, or does it copy? (`t1jax checks`)

The task's validation traces are fed to the model (teacher forcing) and, at every `Check:`
line, its greedy prediction of the check's result (`5*20+9 = 109`, `it ends at 0`) is compared
with the right result, separately for right and wrong attempts. A right attempt's result is the
target the prompt shows, so a model that copies the target scores high on right attempts and
near zero on wrong ones; a model that computes scores high on both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from t1jax.data.synthesis import sft_examples
from t1jax.data.tasks import Task, task_from_config
from t1jax.data.tokenizer import Tokenizer
from t1jax.model import forward
from t1jax.runtime.run_dir import checkpoint_steps, load_run
from t1jax.sampling import bucket


def check_results(response: str) -> list[tuple[str, int, str]]:
    """(attempt, offset of the result in `response`, result) for every `Check:` line that follows
    a `Try:` line. The result is the last word before the line's first comma."""
    found, offset, attempt = [], 0, None
    for line in response.split("\n"):
        if line.startswith("Try: "):
            attempt = line.removeprefix("Try: ").strip()
        elif line.startswith("Check: ") and attempt is not None:
            head = line.split(",")[0].rstrip(".")
            result = head.rsplit(" ", 1)[-1]
            found.append((attempt, offset + len(head) - len(result), result))
        offset += len(line) + 1
    return found


def forced_check_accuracy(task: Task, examples: list[dict], tokenizer: Tokenizer, predict) -> dict:
    """Shares of check results predicted exactly (every token) under teacher forcing.

    examples: {"problem", "prompt", "response"}; predict(ids) -> the greedy next-token id at every
    position of `ids`. Checks whose result the tokenizer merges with the text around it cannot be
    scored on their own and are counted as `skipped`.
    """
    checks = {"right_attempt": [0, 0], "wrong_attempt": [0, 0]}  # kind -> [scored, exactly right]
    skipped = 0
    for example in examples:
        prompt = tokenizer.encode_prompt(example["prompt"])
        response = tokenizer.encode_response(example["response"])
        predicted = predict(prompt + response)
        for attempt, offset, result in check_results(example["response"]):
            before = tokenizer.encode(example["response"][:offset])
            through = tokenizer.encode(example["response"][: offset + len(result)])
            if through[: len(before)] != before or response[: len(through)] != through:
                skipped += 1
                continue
            start = len(prompt) + len(before)  # position of the result's first token
            exact = all(predicted[start - 1 + i] == token for i, token in enumerate(through[len(before) :]))
            kind = "right_attempt" if task.verify(example["problem"], attempt) else "wrong_attempt"
            checks[kind][0] += 1
            checks[kind][1] += exact
    summary = {}
    for kind, (scored, right) in checks.items():
        summary[f"{kind}_checks"], summary[f"{kind}_accuracy"] = scored, right / max(scored, 1)
    return {**summary, "skipped_checks": skipped}


def validation_traces(config, task: Task, num_traces: int) -> list[dict]:
    """`num_traces` synthesized traces of the task's validation split, as SFT writes them."""
    s = config.sft
    traces = sft_examples(task, "validation", num_traces, config.run.seed, s.max_failed, s.retry_prob)
    problems = task.generate("validation", num_traces, config.run.seed)
    return [{**trace, "problem": problem} for trace, problem in zip(traces, problems, strict=True)]


def greedy_predictor(model_config, params):
    """predict(ids) for forced_check_accuracy: one forward pass, padded to a power of two so that
    a run compiles a few times (padding comes after the real tokens, so a causal model ignores it)."""
    step = jax.jit(lambda params, ids: jnp.argmax(forward(model_config, params, ids)[0], axis=-1))

    def predict(ids: list[int]) -> np.ndarray:
        padded = np.zeros((1, bucket(len(ids))), np.int32)
        padded[0, : len(ids)] = ids
        return np.asarray(step(params, padded))[0, : len(ids)]

    return predict


def run_forced_checks(config, run_dir: str, step: int | None = None, num_traces: int = 200) -> dict:
    """forced_check_accuracy of `run_dir`'s checkpoint at `step` (default: the latest) on
    `num_traces` validation traces of sft.task, synthesized with the config's sft settings."""
    task = task_from_config(config, config.sft.task)
    model_config, params, tokenizer = load_run(run_dir, step, config=config, key="--run")
    step = checkpoint_steps(run_dir)[-1] if step is None else step
    predict = greedy_predictor(model_config, params)
    traces = validation_traces(config, task, num_traces)
    result = forced_check_accuracy(task, traces, tokenizer, predict)
    return {"run": run_dir, "step": step, "task": task.name, "traces": num_traces, **result}
