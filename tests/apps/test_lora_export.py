"""`t1jax export` of a LoRA run: the adapters merged into the base weights, written as a plain
model that transformers loads with t1jax's merged logits (float32, to rounding)."""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from t1jax import config as config_lib  # noqa: E402
from t1jax.apps.convert import export_checkpoint  # noqa: E402
from t1jax.data.tokenizer import Tokenizer  # noqa: E402
from t1jax.model import forward, lora  # noqa: E402
from t1jax.runtime.checkpoint import Checkpointer  # noqa: E402
from t1jax.runtime.lora_run import save_base  # noqa: E402
from t1jax.runtime.run_dir import save_run_config  # noqa: E402
from t1jax.train.state import layout_from_config  # noqa: E402

MODEL = {
    "model.vocab_size": 320,
    "model.d_model": 32,
    "model.num_layers": 2,
    "model.num_heads": 4,
    "model.num_kv_heads": 2,
    "model.mlp_dim": 64,
    "model.lora_rank": 4,
    "model.lora_alpha": 8.0,
}


@pytest.mark.slow  # transformers and torch load for it
def test_export_merges_the_adapters_and_reloads_in_transformers(tmp_path):
    """A run of scanned layers (stacked adapters), exported layer by layer."""
    run = tmp_path / "run"
    config = config_lib.load(None, {**MODEL, "model.scan_layers": "true", "run.workdir": str(run)})
    layout = layout_from_config(config, 1)
    save_run_config(run, config)
    Tokenizer.train([f"{a} + {b} = {a + b}" for a in range(30) for b in range(30)], 300).save(str(run))
    base = layout.init_params(1)
    save_base(run, base)
    # adapters as training leaves them: every entry moved off its start, b included
    state = layout.init(2)
    moved = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(x.size), x.shape), state.params)
    with Checkpointer(str(run / "checkpoints"), async_save=False) as checkpointer:
        checkpointer.save(5, state.replace(params=moved))
        checkpointer.wait()

    summary = export_checkpoint(str(run), str(tmp_path / "out"), dtype="float32")
    assert summary["family"] == "llama" and summary["step"] == 5
    assert "lora" not in json.dumps(json.loads((tmp_path / "out" / "config.json").read_text()))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    tokens = np.arange(40).reshape(1, 40) * 7 % 320
    with torch.no_grad():
        logits = reloaded(torch.tensor(tokens)).logits.numpy()
    merged = lora.merge(layout.model_config, jax.device_get(base), jax.device_get(moved))
    expected = np.asarray(forward(layout.model_config, merged, tokens)[0])
    without = np.asarray(forward(layout.model_config, jax.device_get(base), tokens)[0])
    assert np.abs(logits - expected).max() <= 1e-4
    assert np.abs(logits - without).max() > 1e-2  # the adapters made a difference
