"""`t1jax import` / `t1jax export` (t1jax.apps.convert): a Hugging Face model directory becomes
an ordinary run directory that load_run and `t1jax sample` read, and goes back out as one that
transformers loads with the same logits."""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from t1jax import config as config_lib  # noqa: E402
from t1jax.apps.convert import export_checkpoint, import_checkpoint  # noqa: E402
from t1jax.apps.sample import run_sample  # noqa: E402
from t1jax.errors import CheckpointError  # noqa: E402
from t1jax.model import forward  # noqa: E402
from t1jax.runtime.run_dir import load_run  # noqa: E402

VOCAB = 300
TEXTS = [f"{a} + {b} = {a + b}, so the answer is {a + b}." for a in range(40) for b in range(20)]


def _tokenizer(directory) -> tokenizers.Tokenizer:
    """A byte-level BPE of at most VOCAB ids with an end-of-text token, as Qwen's and Llama 3's."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=VOCAB - 20,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS, trainer)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return tok


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny Llama 3 (untied head, llama3 RoPE scaling) with every parameter random, and its tokenizer."""
    directory = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.2)
    model.save_pretrained(directory, max_shard_size="100KB")
    tok = _tokenizer(directory)
    tokens = np.asarray([tok.encode(" ".join(TEXTS[:20])).ids[:128]])
    with torch.no_grad():
        logits = model(torch.tensor(tokens)).logits.numpy()
    return directory, tokens, logits, tok


@pytest.fixture(scope="module")
def run(source, tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs") / "imported"
    mesh = config_lib.load(None, {"mesh.data": 1, "mesh.fsdp": 4, "mesh.tensor": 2}).mesh
    summary = import_checkpoint(str(source[0]), str(directory), "float32", mesh)
    return directory, summary


def test_import_writes_a_run_that_load_run_reads(source, run):
    src, tokens, expected, tok = source
    directory, summary = run
    assert summary["family"] == "llama" and summary["dtype"] == "float32"
    for name in ("config.json", "hf_config.json", "import.json", "tokenizer.json", "tokenizer_config.json"):
        assert (directory / name).is_file(), name
    assert (directory / "generation_config.json").is_file()  # save_pretrained wrote one
    saved = json.loads((directory / "config.json").read_text())
    assert saved["model"]["rope_scaling"] == "llama3" and saved["model"]["tie_embeddings"] is False
    model_config, params, tokenizer = load_run(directory)
    assert params["embed"].sharding.mesh.shape["fsdp"] == 8  # load_run's own default mesh
    logits = np.asarray(jax.jit(forward, static_argnums=0)(model_config, params, tokens)[0])
    assert np.abs(logits - expected).max() <= 1e-4
    assert tokenizer.encode("12 + 7 = 19") == tok.encode("12 + 7 = 19").ids
    assert tokenizer.eos_id == tok.token_to_id("<|endoftext|>")


def test_t1jax_sample_reads_the_imported_run(run):
    directory, _ = run
    config = config_lib.load(
        None,
        {
            "run.workdir": str(directory),
            "sampling.max_new_tokens": 4,
            "sampling.num_samples": 2,
            "sampling.max_prompt_len": 16,
        },
    )
    results = run_sample(config, ["3 + 4 ="])
    assert len(results) == 2 and all(r["tokens"] <= 4 for r in results)


def test_export_reloads_in_transformers_with_the_same_logits(source, run, tmp_path):
    _, tokens, expected, _ = source
    directory, _ = run
    out = tmp_path / "out"
    summary = export_checkpoint(str(directory), str(out), dtype="float32", max_shard_bytes=100_000)
    assert summary["step"] == 0 and summary["family"] == "llama" and len(summary["files"]) > 1
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(summary["copied"])
    assert (out / "tokenizer.json").read_bytes() == (directory / "tokenizer.json").read_bytes()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_array_equal(logits, expected)


def test_clear_errors(source, run, tmp_path):
    directory, _ = run
    (tmp_path / "model.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="model.gguf"):
        import_checkpoint(str(tmp_path / "model.gguf"), str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="no such file or directory"):
        import_checkpoint(str(tmp_path / "nowhere"), str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="exists and is not an empty directory"):
        import_checkpoint(str(source[0]), str(directory))
    with pytest.raises(CheckpointError, match=r"has no step 5 \(steps: \[0\]\)"):
        export_checkpoint(str(directory), str(tmp_path / "b"), step=5)
    with pytest.raises(CheckpointError, match="is not a run directory"):
        export_checkpoint(str(tmp_path), str(tmp_path / "c"))


def test_the_cli_import_command(t1jax_cli, source, tmp_path):
    done = t1jax_cli("import", str(source[0]), "--out", str(tmp_path / "run"), devices=1)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["family"] == "llama"
    assert (tmp_path / "run" / "checkpoints" / "0").is_dir()


def test_a_run_trained_from_scratch_exports_as_llama_with_its_token_ids(tmp_path):
    from t1jax.data.tokenizer import Tokenizer
    from t1jax.model import ModelConfig, init_params
    from t1jax.runtime.run_dir import save_run

    small = {"model.vocab_size": 320, "model.d_model": 32, "model.num_layers": 2, "model.mlp_dim": 64}
    config = config_lib.load(None, {**small, "model.num_heads": 4, "model.num_kv_heads": 2})
    model_config = ModelConfig.from_config(config.model)
    params = init_params(model_config, seed=1)
    run = tmp_path / "run"
    save_run(run, config, params, step=7)
    tokenizer = Tokenizer.train([f"{a} + {b} = {a + b}" for a in range(30) for b in range(30)], 300)
    tokenizer.save(str(run / "tokenizer.model"))
    summary = export_checkpoint(str(run), str(tmp_path / "out"), dtype="float32")
    assert summary["family"] == "llama" and summary["step"] == 7
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["eos_token_id"] == tokenizer.eos_id and written["tie_word_embeddings"] is True
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_id
    tokens = np.arange(40).reshape(1, 40) * 7 % 320
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(torch.tensor(tokens)).logits.numpy()
    expected = np.asarray(jax.jit(forward, static_argnums=0)(model_config, params, tokens)[0])
    assert np.abs(logits - expected).max() <= 1e-4
