"""Loading, overriding and validating configs.

A config is an `ml_collections.ConfigDict` from a Python file whose `get_config()` returns it
(see configs/). Every key must exist in `t1jax.defaults.base_config()`: a misspelt key is an
error naming the closest valid key, never a silently ignored flag.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
import re
from collections.abc import Iterable, Mapping

import ml_collections

from t1jax.defaults import base_config
from t1jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
DTYPES = ("float32", "bfloat16", "float16")


def load(path: str | None = None, overrides: Iterable[str] | Mapping[str, object] = (), default=None):
    """Returns the validated, locked config from `path` (None: `default()`, else the base) with `overrides`.

    `overrides` is either strings "model.num_layers=4" (as given on the command line, values
    parsed by the type of the default) or a mapping {"model.num_layers": 4}.
    """
    config = (default or base_config)() if path is None else _from_file(path)
    _check_against_schema(config, base_config(), source=path or "base config")
    items = overrides.items() if isinstance(overrides, Mapping) else map(_split_override, overrides)
    for dotted, value in items:
        set_value(config, dotted, value)
    validate(config)
    config.lock()
    return config


def _from_file(path: str) -> ml_collections.ConfigDict:
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"t1jax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"config file {path} defines no get_config()")
        config = module.get_config()
    except ConfigError:
        raise
    except Exception as e:  # the user's file: report where it broke, not our stack
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path} returned {type(config).__name__}, not a ConfigDict")
    return config


def _check_against_schema(config, schema, source: str, prefix: str = "") -> None:
    for key in config.keys():
        dotted = prefix + key
        if key not in schema:
            raise ConfigError(f"{source}: unknown key '{dotted}'{_suggest(key, schema, prefix)}")
        value, default = config[key], schema[key]
        if isinstance(default, ml_collections.ConfigDict):
            if not isinstance(value, ml_collections.ConfigDict):
                raise ConfigError(f"{source}: '{dotted}' must be a section, got {value!r}")
            _check_against_schema(value, default, source, dotted + ".")
        else:
            _check_type(dotted, value, default)


def _suggest(key: str, section, prefix: str) -> str:
    close = difflib.get_close_matches(key, list(section.keys()), n=1, cutoff=0.5)
    return f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(section.keys())}"


def _check_type(dotted: str, value, default) -> None:
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"'{dotted}' must be {expected.__name__}, got {value!r}")


def _split_override(text: str) -> tuple[str, str]:
    text = text.removeprefix("--").removeprefix("config.")
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like --config.section.key=value")
    dotted, value = text.split("=", 1)
    return dotted, value


def set_value(config, dotted: str, value) -> None:
    """Sets `config.<dotted>` to `value`; a string is parsed by the type of the default."""
    section, parts = config, dotted.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        prefix = prefix + "." if prefix else ""
        if not isinstance(section, ml_collections.ConfigDict) or part not in section:
            where = section if isinstance(section, ml_collections.ConfigDict) else {}
            raise ConfigError(f"unknown config key '{dotted}'{_suggest(part, where, prefix)}")
        if i < len(parts) - 1:
            section = section[part]
    default = section[parts[-1]]
    if isinstance(default, ml_collections.ConfigDict):
        raise ConfigError(f"'{dotted}' is a section; set one of its keys, e.g. '{dotted}.{next(iter(default.keys()))}'")
    if isinstance(value, str) and not isinstance(default, str):
        value = _parse(dotted, value, default)
    _check_type(dotted, value, default)
    with section.unlocked():
        section[parts[-1]] = float(value) if isinstance(default, float) else value


def _parse(dotted: str, text: str, default):
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError
        return type(default)(text)
    except ValueError:
        raise ConfigError(f"'{dotted}' must be {type(default).__name__}, could not parse {text!r}") from None


def validate(config) -> None:
    """Raises ConfigError for values that are inconsistent with each other."""
    m = config.model
    for key in ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "mlp_dim"):
        _require(m[key] > 0, f"model.{key} must be positive, got {m[key]}")
    _require(
        m.num_heads % m.num_kv_heads == 0,
        f"model.num_heads ({m.num_heads}) must be divisible by model.num_kv_heads ({m.num_kv_heads})",
    )
    _require(
        m.head_dim > 0 or m.d_model % m.num_heads == 0,
        f"model.d_model ({m.d_model}) must be divisible by model.num_heads ({m.num_heads}) when model.head_dim is 0",
    )
    _require(
        m.head_dim >= 0 and (m.head_dim or m.d_model // m.num_heads) % 2 == 0,
        "the head dimension must be even (RoPE rotates pairs)",
    )
    _require(
        m.mlp_activation in ("silu", "gelu"), f"model.mlp_activation must be 'silu' or 'gelu', got {m.mlp_activation!r}"
    )
    for key in ("param_dtype", "compute_dtype"):
        _require(m[key] in DTYPES, f"model.{key} must be one of {DTYPES}, got {m[key]!r}")
    _require(m.sliding_window >= 0 and m.global_every >= 0, "model.sliding_window and model.global_every must be >= 0")
    _require(m.rope_base > 0 and m.norm_eps > 0, "model.rope_base and model.norm_eps must be positive")

    sizes = [config.mesh[a] for a in MESH_AXES]
    _require(
        all(s == -1 or s > 0 for s in sizes), f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}"
    )
    _require(sizes.count(-1) <= 1, f"at most one mesh size may be -1, got {dict(zip(MESH_AXES, sizes))}")
    for logical, axes in config.mesh.rules.items():
        for axis in filter(None, (a.strip() for a in axes.split(","))):
            _require(
                axis in MESH_AXES,
                f"mesh.rules.{logical} names unknown mesh axis '{axis}' (valid: {', '.join(MESH_AXES)})",
            )
    _require(
        config.distributed.mode in ("auto", "off"),
        f"distributed.mode must be 'auto' or 'off', got {config.distributed.mode!r}",
    )

    o = config.optim
    _require(o.learning_rate > 0, f"optim.learning_rate must be positive, got {o.learning_rate}")
    _require(0 <= o.final_lr_fraction <= 1, f"optim.final_lr_fraction must be in [0, 1], got {o.final_lr_fraction}")
    _require(o.warmup_steps >= 0 and o.grad_clip_norm >= 0, "optim.warmup_steps and optim.grad_clip_norm must be >= 0")

    s = config.sft
    _require(s.seq_len > 1 and s.num_steps > 0, "sft.seq_len must be > 1 and sft.num_steps > 0")
    _require(
        s.grad_accum_steps > 0 and s.batch_size % s.grad_accum_steps == 0,
        f"sft.batch_size ({s.batch_size}) must be divisible by sft.grad_accum_steps ({s.grad_accum_steps})",
    )
    _require(0 <= s.eval_fraction < 1, f"sft.eval_fraction must be in [0, 1), got {s.eval_fraction}")
    _require(s.max_failed >= 0, f"sft.max_failed must be >= 0, got {s.max_failed}")
    _require(0 <= s.retry_prob < 1, f"sft.retry_prob must be in [0, 1), got {s.retry_prob}")
    _require(s.source in ("traces", "drills"), f"sft.source must be 'traces' or 'drills', got {s.source!r}")
    sp = config.sampling
    _require(sp.temperature >= 0, f"sampling.temperature must be >= 0 (0: greedy), got {sp.temperature}")
    _require(0 < sp.top_p <= 1, f"sampling.top_p must be in (0, 1], got {sp.top_p}")
    _require(0 <= sp.min_p < 1, f"sampling.min_p must be in [0, 1), got {sp.min_p}")
    for key in ("num_samples", "max_new_tokens", "max_prompt_len"):
        _require(sp[key] >= 1, f"sampling.{key} must be >= 1, got {sp[key]}")
    _require(sp.top_k >= 0, f"sampling.top_k must be >= 0, got {sp.top_k}")
    _require(sp.stage_tokens >= 0, f"sampling.stage_tokens must be >= 0 (0: automatic), got {sp.stage_tokens}")
    r = config.rl
    _require(
        r.samples_per_prompt >= 2,
        f"rl.samples_per_prompt (K) must be >= 2 for the leave-one-out baseline, got {r.samples_per_prompt}",
    )
    _require(
        r.keep_per_prompt == 0 or 2 <= r.keep_per_prompt <= r.samples_per_prompt,
        f"rl.keep_per_prompt must be 0 (all) or in 2..{r.samples_per_prompt}, got {r.keep_per_prompt}",
    )
    _require(
        r.prompts_per_step > 0 and r.minibatches > 0 and r.prompts_per_step % r.minibatches == 0,
        f"rl.prompts_per_step ({r.prompts_per_step}) must be divisible by rl.minibatches ({r.minibatches})",
    )
    _require(r.kl_estimator in ("k1", "k3"), f"rl.kl_estimator must be 'k1' or 'k3', got {r.kl_estimator!r}")
    _require(
        r.aggregation in ("token_mean", "seq_mean"),
        f"rl.aggregation must be 'token_mean' or 'seq_mean', got {r.aggregation!r}",
    )
    _require(0 <= r.anchor_mu <= 1, f"rl.anchor_mu must be in [0, 1], got {r.anchor_mu}")
    _require(r.temperature > 0 and 0 < r.top_p <= 1, "rl.temperature must be > 0 and rl.top_p in (0, 1]")
    for key in ("num_steps", "num_prompts", "max_new_tokens", "num_passes", "grad_accum_steps", "pack_factor"):
        _require(r[key] >= 1, f"rl.{key} must be >= 1, got {r[key]}")
    _require(r.anchor_every >= 0 and r.max_refill_rounds >= 0, "rl.anchor_every and rl.max_refill_rounds must be >= 0")
    _require(
        config.checkpoint.max_to_keep > 0 and config.checkpoint.save_every > 0,
        "checkpoint.max_to_keep and checkpoint.save_every must be positive",
    )
    _require(config.run.log_every > 0 and s.eval_every > 0, "run.log_every and sft.eval_every must be positive")
    _require(s.patience >= 0 and s.min_improvement >= 0, "sft.patience and sft.min_improvement must be >= 0")
    for key, pattern in (("optim.trainable", config.optim.trainable), ("rl.trainable", r.trainable)):
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{key} must be a regular expression over parameter names: {pattern!r}: {e}") from None
    ev = config.eval
    _require(ev.num_problems >= 0, f"eval.num_problems must be >= 0, got {ev.num_problems}")
    for key in ("num_samples", "max_new_tokens", "answer_tokens", "batch_prompts", "scaling_traces"):
        _require(ev[key] >= 1, f"eval.{key} must be >= 1, got {ev[key]}")
    _require(ev.temperature >= 0 and ev.scaling_temperature >= 0, "eval temperatures must be >= 0 (0: greedy)")
    _require(
        ev.scaling_temperature > 0 or ev.scaling_traces == 1,
        "eval.scaling_temperature=0 (greedy) gives identical traces: "
        f"set eval.scaling_traces=1, not {ev.scaling_traces}",
    )
    _require(
        ev.temperature > 0 or ev.num_samples == 1,
        f"eval.temperature=0 (greedy) gives identical samples: set eval.num_samples=1, not {ev.num_samples}",
    )
    _require(0 < ev.top_p <= 1, f"eval.top_p must be in (0, 1], got {ev.top_p}")
    budgets = parse_budgets(ev.budgets)
    _require(
        not budgets or budgets[-1] <= ev.max_new_tokens,
        f"the largest eval.budgets entry ({budgets[-1] if budgets else 0}) exceeds eval.max_new_tokens "
        f"({ev.max_new_tokens}): reasoning traces could not reach it",
    )
    from t1jax.data.tasks import get_task, parse_knobs  # task names and knobs, checked before any training

    for task in sorted({s.task, config.rl.task}):
        get_task(task, **parse_knobs(config.task_knobs))
    _require(config.demo.rl_checkpoints >= 1, f"demo.rl_checkpoints must be >= 1, got {config.demo.rl_checkpoints}")
    _require(config.demo.drill_steps >= 0, f"demo.drill_steps must be >= 0, got {config.demo.drill_steps}")
    _require(
        config.demo.drill_learning_rate > 0,
        f"demo.drill_learning_rate must be > 0, got {config.demo.drill_learning_rate}",
    )
    _require(
        config.demo.drill_batch_size >= 1, f"demo.drill_batch_size must be >= 1, got {config.demo.drill_batch_size}"
    )


def with_overrides(config, overrides: Mapping[str, object]):
    """An unlocked copy of `config` with some keys changed (e.g. a stage's own workdir)."""
    copy = config.copy_and_resolve_references()
    for dotted, value in overrides.items():
        set_value(copy, dotted, value)
    return copy


def parse_budgets(text: str) -> list[int]:
    """eval.budgets "4,8,16" -> [4, 8, 16]: distinct, increasing, positive token counts ("" -> [])."""
    try:
        budgets = [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise ConfigError(f"eval.budgets must be comma-separated token counts like '8,16,32', got {text!r}") from None
    _require(
        all(b > 0 for b in budgets) and budgets == sorted(set(budgets)),
        f"eval.budgets must be distinct positive increasing token counts, got {text!r}",
    )
    return budgets


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
