"""LoRA: low-rank adapters on the model's projection weights (model.lora_rank, lora_alpha,
lora_targets).

A targeted weight W maps its input axes to its output axes; its adapter is a pair
    a: [..., *in, r]    b: [..., r, *out]
and the model runs with W + (lora_alpha / lora_rank) * a @ b (`merge`). Which axes are the input
is read from the weight's logical axes: a weight whose first axis is "embed" maps embed to the
rest (q, k, v, gate, up, unembed), one whose last axis is "embed" maps the rest to embed (o, down,
the embedding table). Leading axes without a name (the layer axis of scanned layers' stacked
weights) are batched over: a stacked weight gets a stacked adapter.

`b` starts at zero, so a fresh adapter leaves the model exactly as it was. Adapters are a nested
dict shaped like the params, with {"a", "b"} where a targeted weight sits: an ordinary pytree that
jit, optax and Orbax take as they take params.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string

import jax
import jax.numpy as jnp

from t1jax.config import ModelConfig
from t1jax.errors import ConfigError
from t1jax.model.params import abstract_params, get_path, logical_axes, paths_and_leaves, set_path

LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_targets")  # what a LoRA run adds to its model


@dataclasses.dataclass(frozen=True)
class Target:
    """A weight that gets an adapter."""

    path: tuple  # keys into the params tree
    shape: tuple[int, ...]
    axes: tuple  # logical axes of the weight
    num_lead: int  # leading unnamed (layer) axes, batched over
    num_in: int  # input axes, after the leading ones

    @property
    def name(self) -> str:
        return ".".join(map(str, self.path))

    def shapes(self, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        lead, rest = self.shape[: self.num_lead], self.shape[self.num_lead :]
        return (*lead, *rest[: self.num_in], rank), (*lead, rank, *rest[self.num_in :])

    def adapter_axes(self) -> dict:
        """Logical axes of a and b: the weight's own (so they shard like it), the rank unsharded."""
        lead, rest = self.axes[: self.num_lead], self.axes[self.num_lead :]
        return {"a": (*lead, *rest[: self.num_in], None), "b": (*lead, None, *rest[self.num_in :])}

    def delta_spec(self) -> str:
        """The einsum of a @ b, e.g. 'Lxr,Lryz->Lxyz' for a stacked q."""
        letters = iter(c for c in string.ascii_lowercase if c != "r")
        lead = "".join(next(letters) for _ in range(self.num_lead))
        ins = "".join(next(letters) for _ in range(self.num_in))
        outs = "".join(next(letters) for _ in range(len(self.shape) - self.num_lead - self.num_in))
        return f"{lead}{ins}r,{lead}r{outs}->{lead}{ins}{outs}"


def enabled(model_config: ModelConfig) -> bool:
    return model_config.lora_rank > 0


def base_model(model_config: ModelConfig) -> ModelConfig:
    """The model without LoRA: what the frozen base weights of a LoRA run are."""
    defaults = ModelConfig()
    return dataclasses.replace(model_config, **{f: getattr(defaults, f) for f in LORA_FIELDS})


def scale(model_config: ModelConfig) -> float:
    return model_config.lora_alpha / model_config.lora_rank


@functools.lru_cache(maxsize=32)
def targets(model_config: ModelConfig) -> tuple[Target, ...]:
    """The weights whose dotted names (e.g. 'blocks.3.attention.q', scanned: 'blocks.attention.q')
    the regex model.lora_targets matches (re.search); an error if it matches none, or a weight
    that is no projection to or from the model dimension (a norm, a bias)."""
    try:
        regex = re.compile(model_config.lora_targets)
    except re.error as e:
        raise ConfigError(f"model.lora_targets {model_config.lora_targets!r} is not a regex: {e}") from None
    shapes = abstract_params(model_config)
    found, names = [], []
    for path, axes in paths_and_leaves(logical_axes(model_config)):
        name = ".".join(map(str, path))
        names.append(name)
        if not regex.search(name):
            continue
        num_lead = next((i for i, a in enumerate(axes) if a is not None), len(axes))
        named = axes[num_lead:]
        if len(named) < 2 or "embed" not in (named[0], named[-1]):
            raise ConfigError(
                f"model.lora_targets {model_config.lora_targets!r} matches {name} (logical axes {axes}), "
                "which is not a projection from or to the model dimension"
            )
        num_in = 1 if named[0] == "embed" else len(named) - 1
        found.append(Target(path, get_path(shapes, path).shape, tuple(axes), num_lead, num_in))
    if not found:
        shown = ", ".join(names if len(names) <= 6 else [*names[:3], "...", *names[-2:]])
        raise ConfigError(
            f"model.lora_targets {model_config.lora_targets!r} matches no weight (re.search over names such as {shown})"
        )
    return tuple(found)


def init_adapters(model_config: ModelConfig, seed: int = 0) -> dict:
    """Fresh adapters: a ~ N(0, 1 / fan_in) (fan_in: the input axes' size, as the model's own
    weights), b = 0; in model.param_dtype. Jit it with out_shardings to create them sharded."""
    rank, dtype = model_config.lora_rank, model_config.params_dtype
    key = jax.random.PRNGKey(seed)
    adapters: dict = {}
    for i, t in enumerate(targets(model_config)):
        a_shape, b_shape = t.shapes(rank)
        fan_in = 1
        for n in t.shape[t.num_lead : t.num_lead + t.num_in]:
            fan_in *= n
        a = jax.random.normal(jax.random.fold_in(key, i), a_shape, jnp.float32) * fan_in**-0.5
        set_path(adapters, t.path, {"a": a.astype(dtype), "b": jnp.zeros(b_shape, dtype)})
    return adapters


def abstract_adapters(model_config: ModelConfig) -> dict:
    """ShapeDtypeStructs of the adapters, without allocating them."""
    return jax.eval_shape(lambda: init_adapters(model_config))


def adapter_logical_axes(model_config: ModelConfig) -> dict:
    """The logical axes of every adapter array, in the adapters' nested-dict structure."""
    axes: dict = {}
    for t in targets(model_config):
        set_path(axes, t.path, t.adapter_axes())
    return axes


def num_adapter_params(model_config: ModelConfig) -> int:
    return sum(x.size for x in jax.tree.leaves(abstract_adapters(model_config)))


def merge(model_config: ModelConfig, base: dict, adapters: dict, dtype=None) -> dict:
    """The params the model runs with: every targeted weight W replaced by
    W + (lora_alpha / lora_rank) * a @ b, computed in float32 and stored in `dtype` (default: W's
    own); the other weights are `base`'s own arrays. Differentiable in the adapters."""
    merged = base
    s = scale(model_config)
    for t in targets(model_config):
        w, ab = get_path(base, t.path), get_path(adapters, t.path)
        delta = jnp.einsum(
            t.delta_spec(),
            ab["a"].astype(jnp.float32),
            ab["b"].astype(jnp.float32),
            precision=jax.lax.Precision.HIGHEST,  # the sampler, training and export merge alike
        )
        value = (w.astype(jnp.float32) + s * delta).astype(dtype or w.dtype)
        merged = _replace(merged, t.path, value)
    return merged


def _replace(tree: dict, path: tuple, value) -> dict:
    """A copy of `tree` with the leaf at `path` replaced; only the dicts on the path are copied."""
    head, *rest = path
    return {**tree, head: _replace(tree[head], tuple(rest), value) if rest else value}
