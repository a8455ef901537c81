"""Hugging Face checkpoints in and out (t1jax.model.hf): tiny random transformers models of each
family, every parameter overwritten with random values (transformers initialises biases and
Gemma's norms to zero, which would hide bias and offset bugs), saved with save_pretrained,
imported through load_hf and compared over 520 tokens in float32; imports onto a mesh of 8
devices equal to the one-device import; export -> from_pretrained round trips; clear errors."""

import dataclasses
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from t1jax import config as config_lib  # noqa: E402
from t1jax.errors import CheckpointError  # noqa: E402
from t1jax.model import ModelConfig, forward, init_params  # noqa: E402
from t1jax.model.hf import config as hf_config  # noqa: E402
from t1jax.model.hf import (  # noqa: E402
    hf_shardings,
    load_hf,
    load_hf_params,
    model_config_from_hf,
    parse_hf_config,
    read_hf_config,
    safetensors_io,  # noqa: E402
    save_hf,
)

SEQ = 520  # >= 512: past Gemma's window (100) and Llama 3's original_max_position_embeddings (64)
TOLERANCE = 1e-4
SHAPE = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=24,  # != hidden_size / heads
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
FAMILIES = {
    "qwen2": lambda: transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(**SHAPE, rope_theta=12345.0, tie_word_embeddings=False)
    ),
    "llama_tied": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SHAPE, rope_theta=500000.0, tie_word_embeddings=True)
    ),
    "llama3_untied": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SHAPE, rope_theta=500000.0, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=False)
    ),
    "gemma3_text": lambda: transformers.Gemma3ForCausalLM(
        transformers.Gemma3TextConfig(
            **{**SHAPE, "num_key_value_heads": 1},
            sliding_window=100,
            query_pre_attn_scalar=48,
            rope_theta=1e6,
            rope_local_base_freq=1e4,
        )
    ),
    # Gemma 3 4B+: linear RoPE scaling of the global layers (published: "rope_scaling": {"factor": 8.0, ...})
    "gemma3_text_linear": lambda: transformers.Gemma3ForCausalLM(
        transformers.Gemma3TextConfig(
            **{**SHAPE, "num_key_value_heads": 1},
            sliding_window=100,
            sliding_window_pattern=3,
            query_pre_attn_scalar=48,
            rope_theta=1e6,
            rope_local_base_freq=1e4,
            rope_scaling={"rope_type": "linear", "factor": 8.0},
        )
    ),
}
PARITY: dict = {}  # family -> max |diff|, printed at the end (the parity table)


def _random_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = FAMILIES[name]().eval()
    with torch.no_grad():
        for p in model.parameters():  # biases and norm weights included
            torch.nn.init.normal_(p, std=0.2)
    return model


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(0, SHAPE["vocab_size"], (1, SEQ))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokens):
    """family -> (HF directory, transformers' float32 logits of `tokens`); Qwen2 in many shards."""
    out = {}
    for name in FAMILIES:
        model = _random_model(name)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path, max_shard_size="100KB" if name == "qwen2" else "50MB")
        with torch.no_grad():
            out[name] = (path, model(torch.tensor(tokens)).logits.numpy())
    return out


def _logits(model_config, params, tokens):
    # jitted: eager ops on sharded params each run collectives, which XLA's CPU backend may deadlock on
    return np.asarray(jax.jit(forward, static_argnums=0)(model_config, params, tokens)[0])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_logits_match_transformers(name, checkpoints, tokens):
    path, expected = checkpoints[name]
    model_config, params = load_hf(path, dtype="float32")
    diff = float(np.abs(_logits(model_config, params, tokens) - expected).max())
    PARITY[name] = diff
    print(f"\nparity {name}: max |logits diff| {diff:.2e} over {SEQ} tokens (float32)")
    assert diff <= TOLERANCE


def test_the_checkpoints_have_the_quirks(checkpoints):
    """What the parity tests cover: the index path, tied and untied heads, the features."""
    assert (checkpoints["qwen2"][0] / "model.safetensors.index.json").is_file()
    assert len(list(checkpoints["qwen2"][0].glob("model-*.safetensors"))) > 3
    configs = {name: model_config_from_hf(read_hf_config(path)) for name, (path, _) in checkpoints.items()}
    assert configs["qwen2"].qkv_bias and configs["qwen2"].rope_base == 12345.0
    assert configs["llama_tied"].tie_embeddings and not configs["llama3_untied"].tie_embeddings
    assert configs["llama3_untied"].rope_scaling == "llama3" and configs["llama3_untied"].rope_scaling_factor == 32
    gemma = configs["gemma3_text"]
    assert (gemma.sliding_window, gemma.global_every, gemma.rope_base, gemma.rope_local_base) == (100, 6, 1e6, 1e4)
    assert gemma.query_scale == 48**-0.5 and gemma.norm_plus_one and gemma.num_kv_heads == 1
    linear = configs["gemma3_text_linear"]
    assert (linear.rope_scaling, linear.rope_scaling_factor, linear.global_every) == ("linear", 8.0, 3)
    for mc in configs.values():
        assert mc.dim_per_head == 24 and mc.d_model == 64 and mc.num_layers == 6


def _multimodal_copy(src: pathlib.Path, dst: pathlib.Path, prefix: str, head: str | None) -> None:
    """The Gemma 3 text checkpoint as a `gemma3` (multimodal) one: keys under `prefix`, the config
    under text_config, a vision tensor beside it."""
    dst.mkdir()
    tensors = {prefix + k[len("model.") :]: v for k, v in load_file(src / "model.safetensors").items()}
    tensors["vision_tower.patch_embedding.weight"] = np.zeros((4, 4), np.float32)
    if head:
        tensors[head] = tensors[prefix + "embed_tokens.weight"]
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    text = json.loads((src / "config.json").read_text())
    config = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "text_config": text}
    (dst / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "prefix, head", [("model.language_model.", None), ("language_model.model.", "language_model.lm_head.weight")]
)
def test_the_text_part_of_a_multimodal_gemma3(prefix, head, checkpoints, tokens, tmp_path):
    path, expected = checkpoints["gemma3_text_linear"]  # 4B+: linear RoPE scaling
    _multimodal_copy(path, tmp_path / "mm", prefix, head)
    model_config, params = load_hf(tmp_path / "mm", dtype="float32")
    assert np.abs(_logits(model_config, params, tokens) - expected).max() <= TOLERANCE


def _one_device(path):
    hf = read_hf_config(path)
    mc = model_config_from_hf(hf, "float32")
    return load_hf_params(path, hf, mc, hf_shardings(mc, devices=jax.devices()[:1]))


@pytest.mark.parametrize("name", ["qwen2", "gemma3_text"])
def test_a_sharded_import_equals_the_one_device_import(name, checkpoints, monkeypatch):
    path, _ = checkpoints[name]
    mesh = config_lib.load(None, {"mesh.data": 1, "mesh.fsdp": 4, "mesh.tensor": 2}).mesh
    reads = []  # (key, elements) of every block read
    read = safetensors_io.SafetensorsReader.read

    def recording(self, key, index):
        block = read(self, key, index)
        reads.append((key, block.size))
        return block

    monkeypatch.setattr(safetensors_io.SafetensorsReader, "read", recording)
    if name == "gemma3_text":  # one KV head: replicated over the tensor axis, with a warning
        with pytest.warns(UserWarning, match=r"'kv_heads' \(size 1, mesh axes tensor\)"):
            model_config, sharded = load_hf(path, "float32", mesh)
    else:
        model_config, sharded = load_hf(path, "float32", mesh)
    q = sharded["blocks"][0]["attention"]["q"]
    assert tuple(q.sharding.spec)[:2] == ("fsdp", "tensor")
    assert {s.data.shape for s in q.addressable_shards} == {(16, 2, 24)}
    # each device read its own block of q_proj, once: 8 blocks of an eighth
    q_reads = [n for key, n in reads if key.endswith("layers.0.self_attn.q_proj.weight")]
    assert len(q_reads) == 8 and set(q_reads) == {q.size // 8}
    one = _one_device(path)
    assert jax.tree.structure(one) == jax.tree.structure(sharded)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(sharded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_qwen_query_heads_the_tensor_axis_does_not_divide_are_replicated(checkpoints):
    """14 heads on tensor=4 (Qwen2.5 0.5B): here 4 heads and 2 KV heads on tensor=8."""
    path, _ = checkpoints["qwen2"]
    mesh = config_lib.load(None, {"mesh.data": 1, "mesh.fsdp": 1, "mesh.tensor": 8}).mesh
    with pytest.warns(UserWarning, match="'heads' .*'kv_heads'"):
        mc, params = load_hf(path, "float32", mesh)
    assert tuple(params["blocks"][0]["attention"]["q"].sharding.spec) in ((), (None,), (None, None), (None, None, None))
    from t1jax.runtime.layout import params_layout
    from t1jax.train.optimizer import make_optimizer
    from t1jax.train.state import make_layout

    with pytest.warns(UserWarning, match="'heads'"):  # readers (eval, sample) replicate too
        reader = params_layout(mc, mesh)
    assert (
        reader.param_shardings["blocks"][0]["attention"]["q"].spec
        == params["blocks"][0]["attention"]["q"].sharding.spec
    )
    rules = {**reader.rules}
    with pytest.raises(config_lib.ConfigError, match="logical axis '(kv_)?heads' has size"):  # training: an error
        make_layout(mc, make_optimizer(config_lib.load().optim, 1), reader.mesh, rules)


@pytest.mark.parametrize("form", ["transformers5", "published"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_export_reloads_in_transformers_with_the_same_logits(name, form, checkpoints, tokens, tmp_path):
    """The source's config.json form is kept: rope_parameters/layer_types, or the published keys."""
    path, expected = checkpoints[name]
    source = read_hf_config(path).source
    source = _published_form(source) if form == "published" else source
    model_config, params = load_hf(path, dtype="float32")
    written = save_hf(model_config, params, tmp_path, source, dtype="float32", max_shard_bytes=200_000)
    config = json.loads((tmp_path / "config.json").read_text())
    assert ("rope_parameters" in config) == (form == "transformers5")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(written["files"]) > 1 and set(index["weight_map"].values()) == set(written["files"])
    assert written["files"][0] == f"model-00001-of-{len(written['files']):05d}.safetensors"
    with safe_open(str(tmp_path / written["files"][0]), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
    assert ("lm_head.weight" in index["weight_map"]) == (not model_config.tie_embeddings)  # tied: written once
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_array_equal(logits, expected)  # the very same weights and config


def test_bfloat16_export_and_a_multimodal_source_written_as_gemma3_text(checkpoints, tokens, tmp_path):
    path, expected = checkpoints["gemma3_text"]
    _multimodal_copy(path, tmp_path / "mm", "model.language_model.", None)
    hf = read_hf_config(tmp_path / "mm")
    model_config, params = load_hf(tmp_path / "mm", dtype="float32")
    save_hf(model_config, params, tmp_path / "out", hf.source, dtype="bfloat16")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["dtype"] == "bfloat16"
    with safe_open(str(tmp_path / "out" / "model-00001-of-00001.safetensors"), framework="numpy") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(torch.tensor(tokens)).logits.numpy()
    assert np.abs(logits - expected).max() < 0.1 * np.abs(expected).max()  # bf16 weights: close, not equal


def test_a_model_trained_from_scratch_exports_as_llama(tmp_path, tokens):
    mc = ModelConfig(vocab_size=300, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=64)
    params = init_params(mc, seed=3)
    assert save_hf(mc, params, tmp_path / "llama", dtype="float32")["family"] == "llama"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "llama", dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(torch.tensor(tokens)).logits.numpy()
    assert np.abs(logits - _logits(mc, params, tokens)).max() <= TOLERANCE
    gemma_like = dataclasses.replace(mc, qk_norm=True, post_norms=True)
    with pytest.raises(CheckpointError, match="cannot express qk_norm, post_norms"):
        save_hf(gemma_like, init_params(gemma_like), tmp_path / "gemma", dtype="float32")


# ------------------------------------------------------------------------------ config.json forms


def _published_form(text: dict) -> dict:
    """A transformers 5 config in the form published checkpoints carry."""
    old = {k: v for k, v in text.items() if k not in ("rope_parameters", "layer_types", "_sliding_window_pattern")}
    rope = text["rope_parameters"]
    if "full_attention" in rope:
        old["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        old["sliding_window_pattern"] = text["layer_types"].index("full_attention") + 1
        rope = rope["full_attention"]
    old["rope_theta"] = rope["rope_theta"]
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    old["rope_scaling"] = None if scaling["rope_type"] == "default" else scaling
    return old


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_published_keys_read_as_the_transformers_5_keys(name, checkpoints):
    text = json.loads((checkpoints[name][0] / "config.json").read_text())
    assert "rope_parameters" in text
    new = model_config_from_hf(parse_hf_config(text, "config.json"))
    old = model_config_from_hf(parse_hf_config(_published_form(text), "config.json"))
    assert old == new


def test_a_published_qwen25_config_with_its_unused_window():
    published = {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "num_hidden_layers": 24,
        "vocab_size": 151936,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "max_window_layers": 21,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
        "rms_norm_eps": 1e-06,
    }
    mc = model_config_from_hf(parse_hf_config(published, "config.json"))
    assert (mc.dim_per_head, mc.sliding_window, mc.qkv_bias, mc.param_dtype) == (64, 0, True, "bfloat16")


def test_the_defaults_are_transformers_defaults():
    classes = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "gemma3_text": transformers.Gemma3TextConfig,
    }
    renamed = {"rope_theta": None, "rope_local_base_freq": None, "sliding_window_pattern": "_sliding_window_pattern"}
    for family, cls in classes.items():
        defaults = cls()
        for key, value in hf_config.DEFAULTS[family].items():
            if key in renamed:
                if renamed[key]:
                    assert getattr(defaults, renamed[key]) == value, (family, key)
                continue
            assert getattr(defaults, key) == value, (family, key)
        rope = defaults.rope_parameters
        full = rope.get("full_attention", rope)
        assert full["rope_theta"] == hf_config.DEFAULTS[family]["rope_theta"]
        if family == "gemma3_text":
            assert rope["sliding_attention"]["rope_theta"] == hf_config.DEFAULTS[family]["rope_local_base_freq"]


GEMMA = {"model_type": "gemma3_text", "num_hidden_layers": 6, "sliding_window": 16}


@pytest.mark.parametrize(
    "config, match",
    [
        ({"model_type": "mistral"}, "model_type 'mistral' is not supported"),
        ({**GEMMA, "final_logit_softcapping": 30.0}, "final_logit_softcapping: softcapping"),
        ({**GEMMA, "attn_logit_softcapping": 50.0}, "attn_logit_softcapping: softcapping"),
        ({**GEMMA, "rope_scaling": {"rope_type": "yarn", "factor": 8.0}}, "rope_scaling.rope_type: RoPE type 'yarn'"),
        ({**GEMMA, "rope_scaling": {"rope_type": "linear"}}, "rope_scaling.factor: missing for linear"),
        ({**GEMMA, "hidden_activation": "gelu"}, "hidden_activation: 'gelu' is not supported"),
        ({**GEMMA, "layer_types": ["sliding_attention"] * 4 + ["full_attention"] * 2}, "layer_types: full-attention"),
        ({"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "RoPE type 'yarn'"),
        ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act: 'gelu' is not supported"),
        ({"model_type": "llama", "attention_bias": True}, "attention_bias: biases"),
        ({"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 64}, "use_sliding_window"),
        ({"model_type": "gemma3", "text_config": {"model_type": "siglip"}}, "model_type 'siglip'"),
    ],
)
def test_unsupported_options_are_named(config, match):
    with pytest.raises(CheckpointError, match=match) as error:
        model_config_from_hf(parse_hf_config(config, "/ckpt/config.json"))
    assert str(error.value).startswith("/ckpt/config.json") and "\n" not in str(error.value)


def test_gemma_layer_patterns():
    def window(config):
        mc = model_config_from_hf(parse_hf_config({**GEMMA, **config}, "config.json"))
        return mc.sliding_window, mc.global_every

    assert window({}) == (16, 6)  # the default pattern, every 6th layer global
    assert window({"sliding_window_pattern": 2}) == (16, 2)
    assert window({"layer_types": ["full_attention"] * 6}) == (0, 0)
    assert window({"layer_types": ["sliding_attention"] * 6}) == (16, 0)
    assert window({"layer_types": ["sliding_attention", "sliding_attention", "full_attention"] * 2}) == (16, 3)


# ------------------------------------------------------------------------------------ bad input


@pytest.fixture
def qwen_copy(checkpoints, tmp_path):
    path = tmp_path / "qwen"
    shutil.copytree(checkpoints["qwen2"][0], path)
    return path


def _error(path) -> str:
    with pytest.raises(CheckpointError) as error:
        load_hf(path, dtype="float32")
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_directory_without_config_json(qwen_copy):
    (qwen_copy / "config.json").unlink()
    assert _error(qwen_copy) == f"{qwen_copy / 'config.json'}: missing (not a Hugging Face model directory)"


def test_a_missing_shard(qwen_copy):
    (qwen_copy / "model-00003-of-00011.safetensors").unlink()
    message = _error(qwen_copy)
    assert message.startswith(f"{qwen_copy / 'model-00003-of-00011.safetensors'}: missing (a shard that ")


def test_a_shape_mismatch(qwen_copy):
    config = json.loads((qwen_copy / "config.json").read_text())
    (qwen_copy / "config.json").write_text(json.dumps({**config, "intermediate_size": 100}))
    message = _error(qwen_copy)
    assert "model.layers.0.mlp.gate_proj.weight has shape [96, 64]" in message and "implies [100, 64]" in message


def test_a_corrupt_safetensors_header(qwen_copy):
    shard = qwen_copy / "model-00002-of-00011.safetensors"
    data = bytearray(shard.read_bytes())
    data[8:16] = b"#garbage"
    shard.write_bytes(bytes(data))
    assert _error(qwen_copy).startswith(f"{shard}: not a readable safetensors file (")


def test_an_unknown_model_type(qwen_copy):
    config = json.loads((qwen_copy / "config.json").read_text())
    (qwen_copy / "config.json").write_text(json.dumps({**config, "model_type": "mixtral"}))
    assert _error(qwen_copy) == f"{qwen_copy / 'config.json'}: model_type 'mixtral' is not supported " + (
        "(supported: qwen2, llama, gemma3_text, gemma3)"
    )


def test_a_missing_head_and_an_unexpected_tensor(checkpoints, tmp_path):
    path = tmp_path / "llama"
    shutil.copytree(checkpoints["llama3_untied"][0], path)
    tensors = load_file(path / "model.safetensors")
    head = tensors.pop("lm_head.weight")
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    assert "no tensor lm_head.weight (config.json: tie_word_embeddings is false)" in _error(path)
    tensors["lm_head.weight"] = head
    tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros(64, np.float32)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    assert "tensor model.layers.0.self_attn.o_proj.bias (and 0 more) is not part of the model" in _error(path)


def test_parity_table():
    """The figures of the parity tests above (run with -s to see them)."""
    if PARITY:
        print("\n| family | max abs logits diff | tokens |\n| --- | --- | --- |")
        for name, diff in PARITY.items():
            print(f"| {name} | {diff:.2e} | {SEQ} |")
