"""A Hugging Face config.json <-> ModelConfig, for the families t1jax runs exactly: Qwen2 /
Qwen2.5 (`qwen2`), Llama 3.x (`llama`) and Gemma 3 text (`gemma3_text`, and the text part of
`gemma3`).

Both forms of config.json are read: the keys that published checkpoints carry (`rope_theta`,
`rope_scaling`, `rope_local_base_freq`, `sliding_window_pattern`) and the `rope_parameters` /
`layer_types` that transformers 5 writes. Every option that would make the model compute
something else (softcapping, another RoPE type, another activation, biases t1jax does not
have) is a CheckpointError naming the key and the file: never a silently different model.
"""

from __future__ import annotations

import copy
import dataclasses

from t1jax.config import DTYPES, ModelConfig
from t1jax.config.model import RUN_OPTIONS
from t1jax.errors import CheckpointError

FAMILIES = ("qwen2", "llama", "gemma3_text")
ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}

# What transformers assumes for a key that config.json leaves out (the config classes'
# defaults, transformers 5.25; tests/model/test_hf.py checks them against the classes). Published
# Gemma 3 4B+ configs rely on these: their text_config names only a few keys.
DEFAULTS = {
    "llama": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "max_position_embeddings": 2048,
        "rope_theta": 10000.0,
    },
    "qwen2": {
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 22016,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "max_position_embeddings": 32768,
        "rope_theta": 10000.0,
    },
    "gemma3_text": {
        "vocab_size": 262208,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "max_position_embeddings": 131072,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "sliding_window_pattern": 6,
    },
}

# ModelConfig fields whose defaults keep t1jax's original model: a checkpoint that needs any other
# value is refused by a t1jax that does not have the field yet.
_FEATURE_DEFAULTS = {
    "rope_local_base": 0.0,
    "rope_scaling": "",
    "rope_scaling_factor": 1.0,
    "rope_low_freq_factor": 1.0,
    "rope_high_freq_factor": 4.0,
    "rope_original_max_len": 8192,
    "query_scale": 0.0,
    "norm_plus_one": False,
}


@dataclasses.dataclass(frozen=True)
class HFConfig:
    """A checkpoint's config: its family, the text model's config dict and the file it came from."""

    family: str  # one of FAMILIES
    text: dict  # the text model's keys (config.json itself, or its text_config for `gemma3`)
    source: dict  # config.json as read
    file: str

    def get(self, key: str):
        """The value of `key`, transformers' default if config.json leaves it out."""
        if key in self.text and self.text[key] is not None:
            return self.text[key]
        if self.family == "gemma3_text" and key == "tie_word_embeddings" and key in self.source:
            return self.source[key]  # `gemma3`: the top-level flag ties the text model's head
        return DEFAULTS[self.family].get(key)

    def fail(self, key: str, message: str):
        raise CheckpointError(f"{self.file}: {key}: {message}")


def parse_hf_config(source: dict, file: str) -> HFConfig:
    """The family and the text model's keys of a config.json (`file` names it in errors)."""
    if not isinstance(source, dict):
        raise CheckpointError(f"{file}: not a JSON object")
    model_type = source.get("model_type")
    text = source
    if model_type == "gemma3":
        text = source.get("text_config") or {}
        if not isinstance(text, dict):
            raise CheckpointError(f"{file}: text_config: not a JSON object")
        model_type = text.get("model_type", "gemma3_text")
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"{file}: model_type {model_type!r} is not supported (supported: qwen2, llama, gemma3_text, gemma3)"
        )
    return HFConfig(model_type, text, source, file)


def model_config_from_hf(hf: HFConfig, dtype: str | None = None) -> ModelConfig:
    """The ModelConfig that computes what transformers computes with this config."""
    d, heads = _int(hf, "hidden_size"), _int(hf, "num_attention_heads")
    kv_heads = _int(hf, "num_key_value_heads") if hf.get("num_key_value_heads") is not None else heads
    head_dim = _int(hf, "head_dim") if hf.get("head_dim") is not None else d // heads
    fields = {
        "vocab_size": _int(hf, "vocab_size"),
        "d_model": d,
        "num_layers": _int(hf, "num_hidden_layers"),
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "mlp_dim": _int(hf, "intermediate_size"),
        "norm_eps": float(hf.get("rms_norm_eps")),
        "tie_embeddings": bool(hf.get("tie_word_embeddings")),
    }
    if heads % kv_heads:
        hf.fail("num_key_value_heads", f"{kv_heads} does not divide num_attention_heads {heads}")
    if head_dim % 2:
        hf.fail("head_dim", f"{head_dim} is odd (RoPE rotates pairs)")
    fields.update(_family_fields(hf))
    fields.update(_rope_fields(hf))
    fields.update(_window_fields(hf, fields["num_layers"]))
    dtype = dtype or _checkpoint_dtype(hf)
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    fields["param_dtype"] = fields["compute_dtype"] = dtype
    return _model_config(fields, hf.file)


def _family_fields(hf: HFConfig) -> dict:
    if hf.family == "gemma3_text":
        activation = hf.get("hidden_activation")  # Gemma 3's MLP reads this key, not hidden_act
        if activation != "gelu_pytorch_tanh":
            hf.fail("hidden_activation", f"{activation!r} is not supported (Gemma 3: gelu_pytorch_tanh)")
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if hf.text.get(key) is not None:
                hf.fail(key, f"softcapping ({hf.text[key]}) is not supported")
        if hf.text.get("use_bidirectional_attention"):
            hf.fail("use_bidirectional_attention", "bidirectional attention is not supported")
        if hf.get("attention_bias"):
            hf.fail("attention_bias", "attention biases are not supported for Gemma 3")
        return {
            "mlp_activation": "gelu",
            "qk_norm": True,
            "post_norms": True,
            "scale_embeddings": True,
            "norm_plus_one": True,
            "query_scale": float(hf.get("query_pre_attn_scalar")) ** -0.5,
        }
    activation = hf.get("hidden_act")
    if activation != "silu":
        hf.fail("hidden_act", f"{activation!r} is not supported ({hf.family}: silu)")
    if hf.family == "llama":
        for key in ("attention_bias", "mlp_bias"):
            if hf.get(key):
                hf.fail(key, "biases in Llama's attention or MLP are not supported")
        return {"qkv_bias": False}
    return {"qkv_bias": True}  # qwen2: q/k/v biases always, none on o


def _rope_fields(hf: HFConfig) -> dict:
    """The RoPE of the global (Gemma: full-attention) layers and, for Gemma, of the sliding ones."""
    params = hf.text.get("rope_parameters")
    if hf.family == "gemma3_text":
        per_type = isinstance(params, dict) and ("full_attention" in params or "sliding_attention" in params)
        full = dict(params.get("full_attention") or {}) if per_type else dict(params or {})
        local = dict(params.get("sliding_attention") or {}) if per_type else {}
        if not params and hf.text.get("rope_scaling"):
            full = dict(hf.text["rope_scaling"])
        full.setdefault("rope_theta", hf.get("rope_theta"))
        local.setdefault("rope_theta", hf.get("rope_local_base_freq"))
        key = "rope_parameters" if params else "rope_scaling"
        out = _rope_of(hf, full, f"{key}.full_attention" if per_type else key)  # scaled: 4B+ (linear)
        if _rope_of(hf, local, "rope_parameters.sliding_attention").get("rope_scaling"):
            hf.fail("rope_parameters.sliding_attention", "RoPE scaling of the sliding layers is not supported")
        out["rope_local_base"] = float(local["rope_theta"])
        return out
    if params:
        return _rope_of(hf, dict(params), "rope_parameters")
    rope = dict(hf.text.get("rope_scaling") or {})
    rope.setdefault("rope_theta", hf.get("rope_theta"))
    return _rope_of(hf, rope, "rope_scaling")


def _rope_of(hf: HFConfig, rope: dict, key: str) -> dict:
    kind = rope.get("rope_type", rope.get("type")) or "default"
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        hf.fail(f"{key}.partial_rotary_factor", "partial rotary embeddings are not supported")
    out = {"rope_base": float(rope["rope_theta"])}
    if kind == "default":
        return out
    if kind not in ("linear", "llama3"):
        hf.fail(f"{key}.rope_type", f"RoPE type {kind!r} is not supported (supported: default, linear, llama3)")
    needed = ("factor",) if kind == "linear" else ("factor", "original_max_position_embeddings")
    missing = [k for k in needed if rope.get(k) is None]
    if missing:
        hf.fail(f"{key}.{missing[0]}", f"missing for {kind} RoPE scaling")
    if kind == "linear":
        return {**out, "rope_scaling": "linear", "rope_scaling_factor": float(rope["factor"])}
    out.update(
        rope_scaling="llama3",
        rope_scaling_factor=float(rope["factor"]),
        rope_low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
        rope_high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
        rope_original_max_len=int(rope["original_max_position_embeddings"]),
    )
    return out


def _window_fields(hf: HFConfig, num_layers: int) -> dict:
    layer_types = hf.text.get("layer_types")
    if layer_types is not None and (not isinstance(layer_types, list) or len(layer_types) != num_layers):
        hf.fail("layer_types", f"expected a list of {num_layers} layer types")
    unknown = sorted({t for t in layer_types or () if t not in ("full_attention", "sliding_attention")})
    if unknown:
        hf.fail("layer_types", f"layer type {unknown[0]!r} is not supported")
    if hf.family == "qwen2":
        if hf.get("use_sliding_window"):
            hf.fail("use_sliding_window", "Qwen2 sliding-window attention is not supported")
        if "sliding_attention" in (layer_types or ()):
            hf.fail("layer_types", "Qwen2 sliding-window attention is not supported")
        return {}
    if hf.family == "llama":
        if "sliding_attention" in (layer_types or ()):
            hf.fail("layer_types", "sliding-window attention is not supported for Llama")
        return {}
    if layer_types is None:
        pattern = hf.text.get("sliding_window_pattern", hf.text.get("_sliding_window_pattern"))
        pattern = int(pattern if pattern is not None else DEFAULTS["gemma3_text"]["sliding_window_pattern"])
        layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers)]
    full = [i for i, t in enumerate(layer_types) if t == "full_attention"]
    if len(full) == num_layers:
        return {"sliding_window": 0, "global_every": 0}
    window = hf.get("sliding_window")
    if not isinstance(window, int) or window <= 0:
        hf.fail("sliding_window", f"sliding layers need a positive window, got {window!r}")
    if not full:
        return {"sliding_window": window, "global_every": 0}
    every = full[0] + 1
    if full != [i for i in range(num_layers) if (i + 1) % every == 0]:
        hf.fail(
            "layer_types",
            f"full-attention layers {full} are not every {every}-th layer: only that pattern is supported",
        )
    return {"sliding_window": window, "global_every": every}


def _checkpoint_dtype(hf: HFConfig) -> str:
    declared = hf.text.get("dtype") or hf.text.get("torch_dtype") or hf.source.get("dtype")
    declared = declared or hf.source.get("torch_dtype")
    return declared if declared in DTYPES else "float32"


def _int(hf: HFConfig, key: str) -> int:
    value = hf.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        hf.fail(key, f"expected a positive integer, got {value!r}")
    return value


def _model_config(fields: dict, file: str) -> ModelConfig:
    """ModelConfig(**fields); a feature this t1jax's ModelConfig lacks is an error unless it has
    its neutral value (then it is simply left out)."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    for name in [n for n in fields if n not in known]:
        if fields[name] != _FEATURE_DEFAULTS.get(name, object()):
            raise CheckpointError(f"{file}: needs model.{name}={fields[name]!r}, which this t1jax does not have")
        del fields[name]
    return ModelConfig(**fields, scan_layers="false")  # the form load_hf builds; runs convert on load


# ---------------------------------------------------------------------------------------- export


def hf_config_for(model_config: ModelConfig, source: dict | None, dtype: str) -> dict:
    """config.json for `model_config`: the imported source's config with what the model config
    determines updated (a `gemma3` source gives its text model's `gemma3_text` config), or, for
    a model t1jax trained from scratch, a Llama (Qwen2 with q/k/v biases) config. An error if
    the written config would not read back as `model_config`."""
    if source is not None:
        hf = parse_hf_config(source, "the run's hf_config.json")
        out = copy.deepcopy(hf.text)
        out["model_type"] = hf.family
        if hf.source is not hf.text:  # gemma3 -> gemma3_text; keep the top-level tie flag
            out.setdefault("tie_word_embeddings", hf.get("tie_word_embeddings"))
            out["architectures"] = [ARCHITECTURES[hf.family]]
            for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if key not in out and key in hf.source:
                    out[key] = hf.source[key]
        family = hf.family
    else:
        family = _family_from_scratch(model_config)
        out = {"architectures": [ARCHITECTURES[family]], "model_type": family, "hidden_act": "silu"}
        out["max_position_embeddings"] = 8192
    _update(out, model_config, family)
    out.pop("torch_dtype", None)
    out["dtype"] = dtype
    reread = _computed(model_config_from_hf(parse_hf_config(out, "config.json"), model_config.param_dtype))
    expected = _computed(model_config)
    if reread != expected:
        a, b = dataclasses.asdict(reread), dataclasses.asdict(expected)
        differ = ", ".join(f"{k}: {b[k]!r} would read back as {a[k]!r}" for k in a if a[k] != b[k])
        raise CheckpointError(f"this model cannot be written as a {family} config.json ({differ})")
    return out


def _computed(mc: ModelConfig) -> ModelConfig:
    """`mc` with its defaults spelt out: two configs that compute the same model become equal."""
    return dataclasses.replace(
        mc,
        head_dim=mc.dim_per_head,
        query_scale=getattr(mc, "query_scale", 0.0) or mc.dim_per_head**-0.5,
        rope_local_base=(getattr(mc, "rope_local_base", 0.0) or mc.rope_base) if mc.sliding_window else 0.0,
        compute_dtype=mc.param_dtype,
        **{name: getattr(ModelConfig(), name) for name in RUN_OPTIONS},
    )


def _family_from_scratch(mc: ModelConfig) -> str:
    features = {
        "qk_norm": mc.qk_norm,
        "post_norms": mc.post_norms,
        "scale_embeddings": mc.scale_embeddings,
        "sliding_window": mc.sliding_window,
        "norm_plus_one": getattr(mc, "norm_plus_one", False),
        "mlp_activation=gelu": mc.mlp_activation != "silu",
    }
    query_scale = getattr(mc, "query_scale", 0.0)
    features["query_scale"] = query_scale and query_scale != mc.dim_per_head**-0.5
    used = [name for name, on in features.items() if on]
    if used:
        raise CheckpointError(
            f"a model trained from scratch is written as a Llama config.json, which cannot express {', '.join(used)}"
        )
    return "qwen2" if mc.qkv_bias else "llama"


def _update(out: dict, mc: ModelConfig, family: str) -> None:
    out.update(
        vocab_size=mc.vocab_size,
        hidden_size=mc.d_model,
        intermediate_size=mc.mlp_dim,
        num_hidden_layers=mc.num_layers,
        num_attention_heads=mc.num_heads,
        num_key_value_heads=mc.num_kv_heads,
        head_dim=mc.dim_per_head,
        rms_norm_eps=mc.norm_eps,
        tie_word_embeddings=mc.tie_embeddings,
    )
    scaling = getattr(mc, "rope_scaling", "")
    rope = {"rope_type": scaling or "default", "rope_theta": mc.rope_base}
    if scaling == "linear":
        rope["factor"] = mc.rope_scaling_factor
    if scaling == "llama3":
        rope.update(
            factor=mc.rope_scaling_factor,
            low_freq_factor=mc.rope_low_freq_factor,
            high_freq_factor=mc.rope_high_freq_factor,
            original_max_position_embeddings=mc.rope_original_max_len,
        )
    if family != "gemma3_text":
        _set_rope(out, rope)
        if family == "qwen2" and "layer_types" in out:
            out["layer_types"] = ["full_attention"] * mc.num_layers
        return
    local = getattr(mc, "rope_local_base", 0.0) or mc.rope_base
    if isinstance(out.get("rope_parameters"), dict):  # else the published keys, which every version reads
        out["rope_parameters"] = {
            "full_attention": rope,
            "sliding_attention": {"rope_type": "default", "rope_theta": local},
        }
        for key in ("rope_theta", "rope_scaling", "rope_local_base_freq"):
            out.pop(key, None)
    else:
        out["rope_theta"], out["rope_local_base_freq"] = mc.rope_base, local
        out["rope_scaling"] = None if not scaling else {k: v for k, v in rope.items() if k != "rope_theta"}
    types = ["sliding_attention" if mc.window_of_layer(i) else "full_attention" for i in range(mc.num_layers)]
    out["sliding_window"] = mc.sliding_window or out.get("sliding_window")
    if "layer_types" in out or "sliding_window_pattern" not in out:
        out["layer_types"] = types
    if "sliding_window_pattern" in out or "_sliding_window_pattern" in out:
        pattern = mc.global_every if mc.sliding_window else 1
        out["sliding_window_pattern" if "sliding_window_pattern" in out else "_sliding_window_pattern"] = pattern or (
            mc.num_layers + 1
        )
    out["query_pre_attn_scalar"] = _query_pre_attn_scalar(mc)


def _set_rope(out: dict, rope: dict) -> None:
    if "rope_parameters" in out:  # else the published keys, which every transformers version reads
        out["rope_parameters"] = rope
        out.pop("rope_scaling", None)
        out.pop("rope_theta", None)
    else:
        out["rope_theta"] = rope["rope_theta"]
        out["rope_scaling"] = (
            None if rope["rope_type"] == "default" else {k: v for k, v in rope.items() if k != "rope_theta"}
        )


def _query_pre_attn_scalar(mc: ModelConfig):
    scale = getattr(mc, "query_scale", 0.0) or mc.dim_per_head**-0.5
    value = scale**-2
    return int(round(value)) if abs(value - round(value)) < 1e-6 * value else value
