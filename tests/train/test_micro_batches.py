"""How many micro-batches an SFT step and an RL update run: grad_accum_steps, or the automatic count."""

from types import SimpleNamespace

import jax
import numpy as np
import pytest
from small_model import SMALL_MODEL, mesh_overrides

import t1jax.train.rl.update as update_lib
from t1jax import config as config_lib
from t1jax.errors import ConfigError
from t1jax.train.micro_batches import CPU_MICRO_BATCH_TOKENS, micro_batch_count
from t1jax.train.rl.update import BATCH_KEYS, make_update_step
from t1jax.train.sft_step import sft_micro_batches
from t1jax.train.state import layout_from_config

RULES = {"batch": ("data", "fsdp")}


def _mesh(platform="cpu", data=1, fsdp=1):
    devices = np.array([SimpleNamespace(platform=platform)] * (data * fsdp)).reshape(data, fsdp)
    return SimpleNamespace(shape={"data": data, "fsdp": fsdp}, devices=devices)


def _sft(batch_size, seq_len, grad_accum_steps=0):
    return SimpleNamespace(batch_size=batch_size, seq_len=seq_len, grad_accum_steps=grad_accum_steps)


def test_the_target_is_two_thousand_tokens():
    assert CPU_MICRO_BATCH_TOKENS == 2048  # the figures below are worked out for it


@pytest.mark.parametrize(
    "batch_size, seq_len, devices, expected",
    [
        (32, 256, 1, 4),  # 8 rows x 256 = 2048 tokens; 2 micro-batches would hold 4096
        (32, 192, 1, 4),  # 8 x 192 = 1536; 16 x 192 = 3072 is over
        (32, 64, 1, 1),  # the whole batch is 2048 tokens
        (32, 192, 8, 1),  # 4 rows per device: 768 tokens
        (32, 1024, 8, 2),  # 4 rows per device: 4096 tokens, in 2 micro-batches 2048
        (12, 256, 1, 2),  # 6 rows x 256 = 1536 (3072 in one)
        (2, 4096, 1, 2),  # no count fits: the most there are, one row each
        (6, 4096, 2, 3),  # 3 rows per device, no count fits: one row per device each time
    ],
)
def test_automatic_count_on_a_cpu(batch_size, seq_len, devices, expected):
    assert sft_micro_batches(_sft(batch_size, seq_len), _mesh(data=devices), RULES) == expected


def test_automatic_count_elsewhere_is_the_whole_batch():
    assert sft_micro_batches(_sft(32, 8192), _mesh("tpu", data=2, fsdp=4), RULES) == 1


def test_a_set_count_is_kept():
    assert sft_micro_batches(_sft(32, 256, 2), _mesh(), RULES) == 2
    assert sft_micro_batches(_sft(32, 8192, 8), _mesh("tpu", fsdp=4), RULES) == 8


def test_counts_that_do_not_split_over_the_shards_are_refused():
    with pytest.raises(
        ConfigError, match=r"sft.batch_size 32 / sft.grad_accum_steps 8 = 4\) must be divisible by the 8"
    ):
        sft_micro_batches(_sft(32, 256, 8), _mesh(data=8), RULES)
    with pytest.raises(ConfigError, match=r"sft.batch_size \(12\) must be divisible by the 8 batch shards"):
        sft_micro_batches(_sft(12, 256), _mesh(data=8), RULES)


@pytest.mark.parametrize(
    "requested, platform, rows, row_len, expected",
    [
        (0, "cpu", 80, 160, 8),  # 10 rows x 160 = 1600 tokens; 5 micro-batches would hold 2560
        (0, "cpu", 12, 160, 1),  # 1920 tokens at once
        (0, "cpu", 13, 160, 13),  # a prime count of rows: no split but one row each fits
        (0, "tpu", 80, 160, 1),
        (3, "cpu", 80, 160, 3),
        (2, "tpu", 80, 160, 2),
    ],
)
def test_micro_batch_count(requested, platform, rows, row_len, expected):
    assert micro_batch_count(requested, _mesh(platform), rows, row_len) == expected


def _random_update_batch(rows, length, vocab, seed=0):
    rng = np.random.default_rng(seed)
    response = np.zeros((rows, length), bool)
    response[:, length // 4 :] = True
    return {
        "tokens": rng.integers(1, vocab, (rows, length)).astype(np.int32),
        "positions": np.broadcast_to(np.arange(length, dtype=np.int32), (rows, length)).copy(),
        "segment_ids": np.ones((rows, length), np.int32),
        "response": response,
        "old_logp": rng.uniform(-5, -1, (rows, length)).astype(np.float32),
        "ref_logp": rng.uniform(-5, -1, (rows, length)).astype(np.float32),
        "advantage": rng.normal(size=(rows, length)).astype(np.float32),
        "loss_weight": np.full((rows, length), 1.0 / response.sum(), np.float32),
    }


def test_an_automatic_rl_update_splits_the_batch_and_equals_the_whole_batch_update(monkeypatch):
    """64 rows x 512 tokens over 8 CPU devices: 8 rows per device, in 2 micro-batches of 4 rows
    (2048 tokens), whose summed gradients give the update of the whole batch."""
    config = config_lib.load(None, {**SMALL_MODEL, **mesh_overrides(8, 1, 1), "optim.warmup_steps": 0})
    layout = layout_from_config(config, 10)
    batch = _random_update_batch(64, 512, config.model.vocab_size)
    assert set(batch) == set(BATCH_KEYS)
    counts = []
    summed = update_lib.summed_gradients

    def recording(value_and_grad, params, micro_batches):
        counts.append(micro_batches["tokens"].shape[0])
        return summed(value_and_grad, params, micro_batches)

    monkeypatch.setattr(update_lib, "summed_gradients", recording)
    results = []
    for grad_accum_steps in (0, 1):
        state, metrics = make_update_step(layout, config.rl, grad_accum_steps)(layout.init(0), batch)
        results.append((jax.tree.map(np.asarray, state.params), {k: float(v) for k, v in metrics.items()}))
    assert counts == [2, 1]
    (params_auto, metrics_auto), (params_whole, metrics_whole) = results
    assert np.abs(params_whole["embed"] - np.asarray(layout.init(0).params["embed"])).max() > 1e-4  # a real step
    for name in ("loss", "pg_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(metrics_auto[name], metrics_whole[name], rtol=1e-5, err_msg=name)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5), params_auto, params_whole
    )  # Adam: ~lr * sign(g) for tiny g
