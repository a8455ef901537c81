"""What sampling and evaluation read: the `sampling` section (`t1jax sample`, RL rollouts) and the
`eval` section (`t1jax eval`, the demo's evaluations), each with the check of its values."""

from __future__ import annotations

import ml_collections

from t1jax.config.require import require
from t1jax.errors import ConfigError


def samples(temperature: float, num_samples: int, max_new_tokens: int) -> ml_collections.ConfigDict:
    """How a prompt's samples are drawn: the one shape of `sampling`, `rl.sampling` and `eval.sampling`
    (t1jax.sampling.strategy_for reads it)."""
    sp = ml_collections.ConfigDict()
    sp.temperature = temperature  # 0: greedy
    sp.top_k = 0  # 0: off
    sp.top_p = 1.0  # 1.0: off
    sp.min_p = 0.0  # 0.0: off
    sp.num_samples = num_samples  # samples per prompt
    sp.max_new_tokens = max_new_tokens
    return sp


def check_samples(where: str, sp) -> None:
    """The checks of a `samples` sub-config named `where` (e.g. "rl.sampling")."""
    require(sp.temperature >= 0, f"{where}.temperature must be >= 0 (0: greedy), got {sp.temperature}")
    require(0 < sp.top_p <= 1, f"{where}.top_p must be in (0, 1], got {sp.top_p}")
    require(0 <= sp.min_p < 1, f"{where}.min_p must be in [0, 1), got {sp.min_p}")
    require(sp.top_k >= 0, f"{where}.top_k must be >= 0, got {sp.top_k}")
    for key in ("num_samples", "max_new_tokens"):
        require(sp[key] >= 1, f"{where}.{key} must be >= 1, got {sp[key]}")


def sampling_section() -> ml_collections.ConfigDict:
    # Sampling: the `sample` command's samples, and the sampler's settings that RL and eval share.
    sp = samples(temperature=1.0, num_samples=4, max_new_tokens=96)
    sp.max_prompt_len = 256
    sp.stage_tokens = 0  # decode stage length: each attends over the cache filled so far (0: auto)
    sp.seed = 0
    return sp


def check_sampling(config) -> None:
    sp = config.sampling
    check_samples("sampling", sp)
    require(sp.max_prompt_len >= 1, f"sampling.max_prompt_len must be >= 1, got {sp.max_prompt_len}")
    require(sp.stage_tokens >= 0, f"sampling.stage_tokens must be >= 0 (0: automatic), got {sp.stage_tokens}")


def eval_section() -> ml_collections.ConfigDict:
    # Evaluation: `t1jax eval`, and the demo's evaluation of its SFT and RL models.
    ev = ml_collections.ConfigDict()
    ev.suite = ""  # "": the built-in task (rl.task) split below; or math500 / gsm8k / aime24 / a JSONL path
    ev.split = "test"
    ev.num_problems = 200  # problems of a built-in task; for a benchmark 0 = all rows, n = the first n
    # n samples per problem (pass@1 is their mean; maj@k and pass@k for k <= n); temperature 0:
    # greedy (then num_samples must be 1)
    ev.sampling = samples(temperature=1.0, num_samples=8, max_new_tokens=160)
    ev.budgets = "4,8,16,32,64,128"  # inference-scaling reasoning budgets in tokens; "": no curve
    ev.scaling_temperature = 0.0  # how the reasoning traces are drawn (0: greedy)
    ev.scaling_traces = 1  # reasoning traces per problem for the scaling curve (> 1 needs a temperature)
    ev.answer_tokens = 32  # greedy tokens decoded after the answer-forcing suffix
    ev.batch_prompts = 64  # prompts per sampler call (bounds the KV cache)
    return ev


def check_eval(config) -> None:
    ev = config.eval
    require(ev.num_problems >= 0, f"eval.num_problems must be >= 0, got {ev.num_problems}")
    check_samples("eval.sampling", ev.sampling)
    require(
        ev.sampling.temperature > 0 or ev.sampling.num_samples == 1,
        "eval.sampling.temperature=0 (greedy) gives identical samples: set eval.sampling.num_samples=1, "
        f"not {ev.sampling.num_samples}",
    )
    for key in ("answer_tokens", "batch_prompts", "scaling_traces"):
        require(ev[key] >= 1, f"eval.{key} must be >= 1, got {ev[key]}")
    require(ev.scaling_temperature >= 0, "eval.scaling_temperature must be >= 0 (0: greedy)")
    require(
        ev.scaling_temperature > 0 or ev.scaling_traces == 1,
        "eval.scaling_temperature=0 (greedy) gives identical traces: "
        f"set eval.scaling_traces=1, not {ev.scaling_traces}",
    )
    budgets = parse_budgets(ev.budgets)
    require(
        not budgets or budgets[-1] <= ev.sampling.max_new_tokens,
        f"the largest eval.budgets entry ({budgets[-1] if budgets else 0}) exceeds eval.sampling.max_new_tokens "
        f"({ev.sampling.max_new_tokens}): reasoning traces could not reach it",
    )


def parse_budgets(text: str) -> list[int]:
    """eval.budgets "4,8,16" -> [4, 8, 16]: distinct, increasing, positive token counts ("" -> [])."""
    try:
        budgets = [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise ConfigError(f"eval.budgets must be comma-separated token counts like '8,16,32', got {text!r}") from None
    require(
        all(b > 0 for b in budgets) and budgets == sorted(set(budgets)),
        f"eval.budgets must be distinct positive increasing token counts, got {text!r}",
    )
    return budgets
