"""The sampler against full forward passes, exact distributions and its own contract."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from small_model import SMALL_MODEL, mesh_overrides

from t1jax import config as config_lib
from t1jax.errors import SamplingError
from t1jax.model import KVCache, ModelConfig, init_params
from t1jax.model import forward as eager_forward
from t1jax.sampling import Greedy, Sample, Sampler, choose, decode, stage_ends
from t1jax.sampling.strategies import invert_cdf
from t1jax.train.state import layout_from_config

CONFIG = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=64)
forward = jax.jit(eager_forward, static_argnums=0)
# float32, logits of magnitude ~5: cached and full passes sum in different orders.
FP32 = dict(rtol=1e-4, atol=1e-4)
PROMPTS = [[2, 5, 6, 7, 8, 9], [2, 11], [2, 30, 31, 32]]


@functools.cache
def params():
    # scaled up so the untrained model has peaked, input-dependent distributions
    return jax.tree.map(lambda x: x * 2.0, jax.jit(init_params, static_argnums=(0, 1))(CONFIG, 0))


def _full_logprobs(prompt, generated):
    """log_softmax of a full forward pass (no cache) at each generated position."""
    sequence = np.asarray([list(prompt) + list(generated)])
    logits, _ = forward(CONFIG, params(), sequence)
    return np.asarray(jax.nn.log_softmax(logits[0, len(prompt) - 1 : -1], axis=-1))


def test_cached_decode_logits_equal_full_forward_with_left_padding():
    prompt, continuation = [2, 5, 6, 7], [9, 10, 11, 12, 13]
    width, pad = 8, 4
    tokens = np.zeros((1, width), np.int32)
    tokens[0, pad:] = prompt
    mask = np.arange(width)[None] >= pad
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    cache = KVCache.empty(CONFIG, 1, width + len(continuation))
    logits, cache = forward(CONFIG, params(), tokens, positions, mask, cache)
    full, _ = forward(CONFIG, params(), np.asarray([prompt + continuation]))
    np.testing.assert_allclose(logits[0, -1], full[0, len(prompt) - 1], **FP32)
    for i, token in enumerate(continuation):
        logits, cache = forward(CONFIG, params(), np.asarray([[token]]), np.asarray([[len(prompt) + i]]), None, cache)
        np.testing.assert_allclose(logits[0, 0], full[0, len(prompt) + i], **FP32)


def test_rows_sharing_a_prompt_prefix_decode_as_the_full_forward():
    """Two left-padded prompts in a prefix cache, three rows each with their own continuation:
    every row's logits equal a full forward over its prompt + continuation."""
    prompts, width, R = [[2, 5, 6, 7], [2, 11]], 6, 3
    tokens = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p) :], mask[i, width - len(p) :] = p, True
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    prefix = KVCache.empty(CONFIG, 2, width)
    _, prefix = forward(CONFIG, params(), tokens, positions, mask, prefix)
    continuations = np.random.default_rng(0).integers(3, CONFIG.vocab_size, (2 * R, 4))
    cache = KVCache.empty(CONFIG, 2 * R, 4)
    for t in range(4):
        pos = np.asarray([[len(prompts[row // R]) + t] for row in range(2 * R)])
        logits, cache = forward(CONFIG, params(), continuations[:, t : t + 1], pos, None, cache, prefix)
        for row in range(2 * R):
            full, _ = forward(CONFIG, params(), np.asarray([prompts[row // R] + list(continuations[row, : t + 1])]))
            np.testing.assert_allclose(logits[row, 0], full[0, -1], **FP32)


def test_a_grown_cache_decodes_as_the_full_forward():
    """Decode stages grow the cache between steps: the appended slots must stay invisible."""
    prompt, continuation = [2, 5, 6, 7], [9, 10, 11, 12, 13]
    full, _ = forward(CONFIG, params(), np.asarray([prompt + continuation]))
    cache = KVCache.empty(CONFIG, 1, len(prompt) + 2)
    _, cache = forward(CONFIG, params(), np.asarray([prompt]), None, None, cache)
    for i, token in enumerate(continuation):
        if i == 2:
            cache = cache.grow(cache.num_slots + 3)
        logits, cache = forward(CONFIG, params(), np.asarray([[token]]), np.asarray([[len(prompt) + i]]), None, cache)
        np.testing.assert_allclose(logits[0, 0], full[0, len(prompt) + i], **FP32)
    assert cache.num_slots == len(prompt) + 5
    with pytest.raises(ValueError, match="shrink"):
        cache.grow(2)


def test_stage_schedule():
    assert stage_ends(10, 3) == (3, 6, 9, 10)
    assert stage_ends(9, 3) == (3, 6, 9)
    assert stage_ends(16) == (16,)  # short generations decode in one stage
    assert stage_ends(128) == (32, 64, 96, 128)
    assert stage_ends(512) == (128, 256, 384, 512)
    with pytest.raises(SamplingError, match="stage_tokens"):
        stage_ends(8, -1)


@pytest.mark.parametrize("stage_tokens", [1, 3])
def test_staged_decoding_equals_one_stage(stage_tokens):
    """Stops, padding, lengths and logprobs do not depend on where the stage boundaries fall."""
    free = Sampler(CONFIG, Greedy(), max_new_tokens=10)(params(), PROMPTS, jax.random.key(0))
    stop = int(free.tokens[0, 4])  # some rows stop early (inside a later stage), others run out
    kwargs = dict(max_new_tokens=10, num_samples=2, stop_ids=(stop,), pad_id=0)
    one = Sampler(CONFIG, Greedy(), stage_tokens=10, **kwargs)(params(), PROMPTS, jax.random.key(0))
    staged = Sampler(CONFIG, Greedy(), stage_tokens=stage_tokens, **kwargs)(params(), PROMPTS, jax.random.key(0))
    np.testing.assert_array_equal(staged.tokens, one.tokens)
    np.testing.assert_array_equal(staged.lengths, one.lengths)
    np.testing.assert_array_equal(staged.finished, one.finished)
    np.testing.assert_allclose(staged.logprobs, one.logprobs, **FP32)
    assert one.finished.any() and not one.finished.all()


def _greedy_without_cache(prompt, steps):
    sequence = list(prompt)
    for _ in range(steps):
        logits, _ = forward(CONFIG, params(), np.asarray([sequence]))
        sequence.append(int(np.argmax(logits[0, -1])))
    return sequence[len(prompt) :]


def test_greedy_with_and_without_cache_agree_and_top_k_1_is_greedy():
    out = Sampler(CONFIG, Greedy(), max_new_tokens=8)(params(), PROMPTS, jax.random.key(0))
    for row, prompt in enumerate(PROMPTS):
        assert out.tokens[row].tolist() == _greedy_without_cache(prompt, 8)
    top1 = Sampler(CONFIG, Sample(temperature=0.7, top_k=1), max_new_tokens=8)(params(), PROMPTS, jax.random.key(5))
    np.testing.assert_array_equal(top1.tokens, out.tokens)


def test_returned_logprobs_are_the_temperature_1_model_logprobs():
    sampler = Sampler(CONFIG, Sample(temperature=1.5, top_p=0.9), max_new_tokens=6, num_samples=2)
    out = sampler(params(), PROMPTS, jax.random.key(1))
    for row in range(len(PROMPTS) * 2):
        prompt, generated = PROMPTS[row // 2], out.tokens[row]
        reference = _full_logprobs(prompt, generated)
        expected = reference[np.arange(6), generated]
        np.testing.assert_allclose(out.logprobs[row], expected, rtol=1e-4, atol=1e-4)


# Significance level of the distribution tests: a correct sampler fails with probability 1e-3.
ALPHA = 1e-3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_frequencies_match_softmax_over_temperature(temperature):
    logits = jnp.asarray([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws = 60_000
    tokens = choose(jax.random.key(42), jnp.broadcast_to(logits, (draws, 6)), Sample(temperature=temperature))
    observed = np.bincount(np.asarray(tokens), minlength=6)
    expected = np.asarray(jax.nn.softmax(logits / temperature)) * draws
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert statistic < stats.chi2.ppf(1 - ALPHA, df=5), (observed, expected)


def test_top_p_and_min_p_never_leave_their_sets_and_keep_proportions():
    logits = jnp.asarray([3.0, 2.5, 2.0, 0.0, -1.0, -2.0, -4.0, -5.0])
    probs = np.asarray(jax.nn.softmax(logits))
    # numpy nucleus: the smallest prefix of the sorted tokens with mass >= 0.8
    order = np.argsort(-probs)
    size = int(np.searchsorted(np.cumsum(probs[order]), 0.8) + 1)
    nucleus = set(order[:size].tolist())
    draws = 40_000
    tokens = np.asarray(choose(jax.random.key(7), jnp.broadcast_to(logits, (draws, 8)), Sample(top_p=0.8)))
    assert set(tokens.tolist()) <= nucleus and len(set(tokens.tolist())) == len(nucleus)
    kept = np.asarray(sorted(nucleus))
    observed = np.bincount(tokens, minlength=8)[kept]
    expected = probs[kept] / probs[kept].sum() * draws
    assert ((observed - expected) ** 2 / expected).sum() < stats.chi2.ppf(1 - ALPHA, df=len(kept) - 1)
    min_p = np.asarray(choose(jax.random.key(8), jnp.broadcast_to(logits, (draws, 8)), Sample(min_p=0.3)))
    assert set(min_p.tolist()) == {i for i in range(8) if probs[i] >= 0.3 * probs.max()}


def test_inverting_the_cdf_matches_a_float64_reference_and_skips_zero_mass():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(500, 16)) * 2
    logits[:, [0, 5, 15]] = -np.inf  # filtered out, first and last included
    u = rng.uniform(size=(500, 1))
    mass = np.exp(logits - logits.max(-1, keepdims=True))
    cdf = np.cumsum(mass, -1)
    expected = (cdf <= u * cdf[:, -1:]).sum(-1)  # the first token whose cdf exceeds u * total
    got = np.asarray(invert_cdf(jnp.asarray(logits, jnp.float32), jnp.asarray(u, jnp.float32)))
    np.testing.assert_array_equal(got, expected)
    # at the ends of [0, 1] no zero-mass token is chosen; u = 1 (rounding) gives the most likely
    ends = np.asarray(invert_cdf(jnp.asarray(logits[:4], jnp.float32), jnp.asarray([[0.0], [0.0], [1.0], [1.0]])))
    np.testing.assert_array_equal(ends[:2], np.argmax(mass[:2] > 0, axis=-1))
    np.testing.assert_array_equal(ends[2:], np.argmax(logits[2:4], axis=-1))


def test_stop_ids_end_sequences_and_the_rest_is_padding():
    free = Sampler(CONFIG, Greedy(), max_new_tokens=10)(params(), PROMPTS, jax.random.key(0))
    stop = int(free.tokens[0, 3])  # a token the first prompt produces at step 3
    first = int(np.argmax(free.tokens[0] == stop))
    out = Sampler(CONFIG, Greedy(), max_new_tokens=10, stop_ids=(stop,), pad_id=0)(params(), PROMPTS, jax.random.key(0))
    assert out.finished[0] and out.lengths[0] == first + 1
    np.testing.assert_array_equal(out.tokens[0, : first + 1], free.tokens[0, : first + 1])
    assert (out.tokens[0, first + 1 :] == 0).all() and (out.logprobs[0, first + 1 :] == 0).all()
    for row in range(len(PROMPTS)):
        if stop not in free.tokens[row]:
            assert out.truncated[row] and out.lengths[row] == 10


def test_k_samples_differ_and_prefill_runs_once_per_prompt():
    K = 4
    out = Sampler(CONFIG, Sample(temperature=1.0), max_new_tokens=8, num_samples=K)(
        params(), PROMPTS, jax.random.key(3)
    )
    for p in range(len(PROMPTS)):
        rows = {tuple(r) for r in out.tokens[p * K : (p + 1) * K]}
        assert len(rows) > 1
    # The compiled function's only wide (prompt-length) projections act on P rows, never P*K,
    # and the prompt's keys are stored once per prompt, not copied to its K samples.
    P, L = 3, 16
    traced = jax.make_jaxpr(functools.partial(decode, CONFIG, Sample(), 8, K, (), 0, stage_ends(8, 3), None))(
        params(), jnp.zeros((P, L), jnp.int32), jnp.ones((P, L), bool), jnp.zeros((P * K, 8, 1))
    )
    text = str(traced)
    assert f"f32[{P},{L},32]" in text and f"f32[{P},2,8,{L}]" in text  # prefill; prompt keys [P, KV, H, L]
    assert f"[{P * K},{L},32]" not in text and f"[{P * K},{L},4,8]" not in text
    sample_key_slots = [int(n) for n in re.findall(rf"\[{P * K},2,8,(\d+)\]", text)]
    assert sample_key_slots and max(sample_key_slots) <= 8  # the samples' caches hold their own 8 tokens


def test_sharded_greedy_equals_single_device():
    config = config_lib.load(None, {**SMALL_MODEL, **mesh_overrides(2, 2, 2)})
    layout = layout_from_config(config, 1)
    sharded_params = jax.device_put(params(), layout.shardings.params)
    # in 3 decode stages, so the cache grown between them keeps its sharding
    sampler = Sampler(CONFIG, Greedy(), max_new_tokens=8, num_samples=2, layout=layout, stage_tokens=3)
    out = sampler(sharded_params, PROMPTS, jax.random.key(0))
    reference = Sampler(CONFIG, Greedy(), max_new_tokens=8, num_samples=2)(params(), PROMPTS, jax.random.key(0))
    np.testing.assert_array_equal(out.tokens, reference.tokens)
    np.testing.assert_allclose(out.logprobs, reference.logprobs, rtol=1e-5, atol=1e-5)


def test_data_parallel_sampling_equals_single_device_without_collectives():
    # Params replicated over a mesh of 8: each device decodes its rows in its own loops, with
    # the same random numbers as on one device (whose batch has 4 rows, not 8: filler rows do
    # not change the others' samples), and no device waits on another while decoding.
    config = config_lib.load(None, {**SMALL_MODEL, **mesh_overrides(8, 1, 1)})
    layout = layout_from_config(config, 1)
    replicated_params = jax.device_put(params(), layout.shardings.params)
    strategy, key = Sample(temperature=1.5, top_k=20), jax.random.key(5)
    sampler = Sampler(CONFIG, strategy, max_new_tokens=8, num_samples=2, stop_ids=(7,), layout=layout, stage_tokens=3)
    out = sampler(replicated_params, PROMPTS, key)
    reference = Sampler(CONFIG, strategy, max_new_tokens=8, num_samples=2, stop_ids=(7,), stage_tokens=3)
    expected = reference(params(), PROMPTS, key)
    np.testing.assert_array_equal(out.tokens, expected.tokens)
    np.testing.assert_array_equal(out.lengths, expected.lengths)
    np.testing.assert_array_equal(out.finished, expected.finished)
    np.testing.assert_allclose(out.logprobs, expected.logprobs, rtol=1e-5, atol=1e-5)
    lowered = sampler._function(8).lower(replicated_params, np.zeros((8, 8), np.int32), np.ones((8, 8), bool), key)
    text = lowered.compile().as_text()
    assert not re.search(r"all-reduce|all-gather|collective-permute|all-to-all", text)


def test_bad_arguments_name_the_argument():
    with pytest.raises(SamplingError, match="num_samples"):
        Sampler(CONFIG, Greedy(), max_new_tokens=4, num_samples=0)
    with pytest.raises(SamplingError, match="top_p must be in"):
        Sample(top_p=1.5)
    with pytest.raises(SamplingError, match="top_p must be in"):
        Sample(top_p=0.0)
    sampler = Sampler(CONFIG, Greedy(), max_new_tokens=4, max_prompt_len=5)
    with pytest.raises(SamplingError, match="prompt 1 is empty"):
        sampler(params(), [[2], []], jax.random.key(0))
    with pytest.raises(SamplingError, match="prompt 0 has 6 tokens, more than max_prompt_len 5"):
        sampler(params(), [[2] * 6], jax.random.key(0))
