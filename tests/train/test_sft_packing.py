"""Packed SFT rows: whole examples, resumable, and the same step as one example per row."""

import collections

import jax
import numpy as np
from small_model import SMALL_MODEL

from t1jax import config as config_lib
from t1jax import parallel
from t1jax.data.sft_batches import EncodedExamples, batch_stream
from t1jax.model import ModelConfig
from t1jax.train.optimizer import learning_rate_schedule, make_optimizer
from t1jax.train.sft_step import make_sft_step
from t1jax.train.state import make_layout

WIDTH = 12


def _examples(n, seed=0):
    """Example i: tokens 100*i+1, ...; the first third of each is prompt (loss mask 0)."""
    lengths = np.random.default_rng(seed).integers(2, WIDTH + 1, n).astype(np.int32)
    tokens = np.zeros((n, WIDTH), np.int32)
    mask = np.zeros((n, WIDTH), np.int32)
    for i, length in enumerate(lengths):
        tokens[i, :length] = 100 * i + 1 + np.arange(length)
        mask[i, length // 3 : length] = 1
    return EncodedExamples(tokens, mask, 0, lengths)


def _segments(batch):
    """Every (example index, tokens, loss mask, positions) in a packed batch; checks the ids."""
    found = []
    for tokens, mask, ids, positions in zip(*(batch[k] for k in ("tokens", "loss_mask", "segment_ids", "positions"))):
        count = ids.max()
        used = ids > 0
        # ids run 1, 2, ..., count from the left, and padding (id 0) only at the end
        assert used.sum() == np.argmin(np.append(used, False)) and (np.diff(ids[used]) >= 0).all()
        assert (tokens[~used] == 0).all() and (mask[~used] == 0).all()
        assert sorted(set(ids[used])) == list(range(1, count + 1))
        for segment in range(1, count + 1):
            where = ids == segment
            found.append((int(tokens[where][0]) // 100, tokens[where], mask[where], positions[where]))
    return found


def test_packed_rows_hold_whole_examples_and_every_example_once_per_epoch():
    data = _examples(300)
    stream = iter(batch_stream(data, batch_size=4, seed=1, pack=True))
    seen = collections.Counter()
    rows = 0
    while sum(seen.values()) < 3 * 300:
        batch = next(stream)
        assert batch["tokens"].shape == (4, WIDTH)
        rows += 4
        for index, tokens, mask, positions in _segments(batch):
            n = data.lengths[index]
            np.testing.assert_array_equal(tokens, data.tokens[index, :n])
            np.testing.assert_array_equal(mask, data.loss_mask[index, :n])
            np.testing.assert_array_equal(positions, np.arange(n))
            seen[index] += 1
    # The open rows carry a few examples over from one epoch into the next, so three epochs'
    # worth of segments hold every example three times, give or take one; and packing needs
    # fewer rows than examples.
    assert set(seen) == set(range(300)) and min(seen.values()) >= 2 and max(seen.values()) <= 4
    assert rows < sum(seen.values())


def test_packed_stream_resumes_exactly_and_processes_are_disjoint():
    data = _examples(30)
    stream = iter(batch_stream(data, batch_size=4, seed=2, pack=True))
    for _ in range(3):
        next(stream)
    state = stream.get_state()
    expected = [next(stream) for _ in range(4)]
    resumed = iter(batch_stream(data, batch_size=4, seed=2, pack=True))
    resumed.set_state(state)
    for want in expected:
        jax.tree.map(np.testing.assert_array_equal, next(resumed), want)

    parts = [iter(batch_stream(data, 4, seed=2, process_index=i, process_count=2, pack=True)) for i in range(2)]
    first = [{index for _ in range(2) for index, *_ in _segments(next(p))} for p in parts]
    assert first[0] and first[1] and not first[0] & first[1]


def test_a_packed_step_equals_the_step_on_one_example_per_row():
    """Four examples packed into two rows give the loss, count and update of four padded rows."""
    config = config_lib.load(None, {**SMALL_MODEL, "optim.warmup_steps": 1})
    mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
    rules = parallel.rules_table(config.mesh.rules)
    layout = make_layout(ModelConfig.from_config(config.model), make_optimizer(config.optim, 10), mesh, rules)
    step = make_sft_step(layout, learning_rate_schedule(config.optim, 10), grad_accum_steps=2)

    rng = np.random.default_rng(3)
    lengths = [(5, 7), (3, 9)]  # two rows of 12 tokens, two examples each
    unpacked = {"tokens": np.zeros((4, WIDTH), np.int32), "loss_mask": np.zeros((4, WIDTH), np.int32)}
    packed = {k: np.zeros((2, WIDTH), np.int32) for k in ("tokens", "loss_mask", "segment_ids", "positions")}
    example = 0
    for row, pair in enumerate(lengths):
        start = 0
        for segment, n in enumerate(pair, start=1):
            tokens = np.concatenate([[1], rng.integers(2, 64, n - 1)])
            mask = (np.arange(n) >= 2).astype(np.int32)
            unpacked["tokens"][example, :n], unpacked["loss_mask"][example, :n] = tokens, mask
            packed["tokens"][row, start : start + n], packed["loss_mask"][row, start : start + n] = tokens, mask
            packed["segment_ids"][row, start : start + n] = segment
            packed["positions"][row, start : start + n] = np.arange(n)
            start, example = start + n, example + 1

    results = []
    for batch in (unpacked, packed):
        state, metrics = step(layout.init(0), batch)
        results.append((jax.tree.map(np.asarray, state.params), {k: float(v) for k, v in metrics.items()}))
    (params_a, metrics_a), (params_b, metrics_b) = results
    assert metrics_a["examples"] == metrics_b["examples"] == 4
    assert metrics_a["response_tokens"] == metrics_b["response_tokens"] == sum(n - 2 for p in lengths for n in p)
    np.testing.assert_allclose(metrics_b["loss"], metrics_a["loss"], rtol=1e-5)
    np.testing.assert_allclose(metrics_b["grad_norm"], metrics_a["grad_norm"], rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6), params_a, params_b)
