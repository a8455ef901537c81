"""The jitted sampler: prefill each prompt once into a cache that its K samples share, then
decode the samples in while_loops.

Decoding exits as soon as every sequence has stopped; each decode stage's cache has a static
shape and its buffer is updated in place. Prompt and batch sizes are bucketed (powers of two)
so a run compiles a bounded number of times.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from t1jax import parallel
from t1jax.errors import SamplingError
from t1jax.model import KVCache, ModelConfig, forward
from t1jax.parallel.host_data import fetch, on_mesh
from t1jax.sampling.strategies import Strategy, choose_with_uniforms, uniforms


@dataclasses.dataclass
class SamplerOutput:
    """Samples of P prompts x K: row p * K + k is sample k of prompt p.

    tokens [N, max_new_tokens]: generated tokens, `pad_id` after the stop token.
    logprobs [N, max_new_tokens]: log-probability of each generated token under the model's
        own distribution at temperature 1 with no filtering (log pi_old for RL), whatever
        strategy chose it; 0 on padding.
    lengths [N]: generated tokens including the stop token.
    finished [N]: a stop token was produced; truncated = not finished (hit the limit).
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    lengths: np.ndarray
    finished: np.ndarray

    @property
    def truncated(self) -> np.ndarray:
        return ~self.finished


def bucket(n: int, minimum: int = 8) -> int:
    """The next power of two >= n (at least `minimum`)."""
    return max(minimum, 1 << max(n - 1, 0).bit_length())


def _cache_spec(rules: dict, mesh) -> PartitionSpec:
    return parallel.partition_spec(("batch", "kv_heads", None, None), rules, mesh=mesh)


def stage_ends(max_new_tokens: int, stage_tokens: int = 0) -> tuple[int, ...]:
    """The generated-token counts at which decode stages end.

    Each stage attends over a cache only as long as the tokens it can have written, so early
    steps do not read the empty tail of the cache. By default up to 4 stages of at least 32
    tokens: a step's cost at batch 64 is about half attention, and each stage is one more
    compiled copy of the decode step (at batch 64, 4 stages decode 1.07-1.19x faster than one at
    128 new tokens and 1.34x at 512, and compile ~2x longer; benchmarks/sampler.py).
    """
    if stage_tokens < 0:
        raise SamplingError(f"stage_tokens must be >= 0 (0: automatic), got {stage_tokens}")
    if stage_tokens == 0:
        stage_tokens = max(32, -(-max_new_tokens // 4))
    return tuple(range(stage_tokens, max_new_tokens, stage_tokens)) + (max_new_tokens,)


def decode(
    config: ModelConfig,
    strategy: Strategy,
    max_new_tokens: int,
    num_samples: int,
    stop_ids: tuple[int, ...],
    pad_id: int,
    stages: tuple[int, ...],
    cache_sharding,
    params,
    tokens_PL,
    mask_PL,
    u_NT1,
):
    """The traced body of the sampler (see Sampler). Prompts are left-padded: the last column
    is every prompt's last token, and padding slots are masked out of the cache. `u_NT1`: the
    uniform number that draws each step's token of each sample (see choose_with_uniforms).

    Decoding runs in `stages` (see stage_ends): one while_loop each, over a cache of the
    samples' own tokens grown to the stage's last token; a stage whose sequences have all
    stopped exits at once."""
    P, L = tokens_PL.shape
    K, N = num_samples, tokens_PL.shape[0] * num_samples
    positions = jnp.maximum(jnp.cumsum(mask_PL, axis=1) - 1, 0).astype(jnp.int32)

    def constrain(cache):
        if cache_sharding is None:
            return cache
        shard = functools.partial(jax.lax.with_sharding_constraint, shardings=cache_sharding)
        return cache.replace(k=tuple(map(shard, cache.k)), v=tuple(map(shard, cache.v)))

    # Prefill runs once per prompt; its cache is the read-only prefix that the prompt's K
    # samples all attend to (stored once, not K times), and each sample's own tokens go to a
    # cache of N = P * K rows.
    prompt_cache = constrain(KVCache.empty(config, P, L))
    logits, prompt_cache = forward(config, params, tokens_PL, positions, mask_PL, prompt_cache)
    cache = constrain(KVCache.empty(config, N, stages[0]))
    stops = jnp.asarray(stop_ids, jnp.int32)

    def emit(state, logits_NV):
        """Chooses the next tokens from `logits_NV` and writes them at column `step`."""
        step, cache, position, done, length, tokens, logprobs, _ = state
        u_N1 = jax.lax.dynamic_index_in_dim(u_NT1, step, axis=1, keepdims=False)
        token = choose_with_uniforms(u_N1, logits_NV, strategy)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits_NV, axis=-1), token[:, None], axis=-1)[:, 0]
        token, logp = jnp.where(done, pad_id, token), jnp.where(done, 0.0, logp)
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, step))
        logprobs = jax.lax.dynamic_update_slice(logprobs, logp[:, None], (0, step))
        length = length + (~done).astype(jnp.int32)
        done = done | jnp.isin(token, stops)
        return step + 1, cache, position, done, length, tokens, logprobs, token

    def next_token(state):
        step, cache, position, done, length, tokens, logprobs, last = state
        logits, cache = forward(config, params, last[:, None], position[:, None], None, cache, prompt_cache)
        return emit((step, cache, position + 1, done, length, tokens, logprobs, last), logits[:, 0])

    state = (
        jnp.int32(0),
        cache,
        jnp.repeat(positions[:, -1] + 1, K),
        jnp.zeros(N, bool),
        jnp.zeros(N, jnp.int32),
        jnp.full((N, max_new_tokens), pad_id, jnp.int32),
        jnp.zeros((N, max_new_tokens), jnp.float32),
        jnp.zeros(N, jnp.int32),
    )
    state = emit(state, jnp.repeat(logits[:, -1], K, axis=0))
    for i, end in enumerate(stages):
        if i:  # the step that emits token `end - 1` writes its input, token `end - 2`, to slot end - 2
            state = (state[0], constrain(state[1].grow(end)), *state[2:])

        def keep_going(state, end=end):
            step, done = state[0], state[3]
            return (step < end) & ~jnp.all(done)

        state = jax.lax.while_loop(keep_going, next_token, state)
    _, _, _, done, length, tokens, logprobs, _ = state
    return tokens, logprobs, length, done


class Sampler:
    """Samples K continuations of each prompt with one compiled function per bucket.

    With a `layout` (t1jax.runtime.layout.ParamsLayout, or a train StateLayout) the params and
    the batch are sharded on its mesh (batch over the 'batch' rule, cache heads over 'kv_heads');
    without one it runs on the default device; on a mesh that replicates the params, each device decodes its own rows.
    A key gives the same samples on any mesh and batch bucket. `stage_tokens`: see stage_ends
    (0: automatic; `max_new_tokens`: one stage, the fastest to compile).
    """

    def __init__(
        self,
        model_config: ModelConfig,
        strategy: Strategy,
        max_new_tokens: int,
        num_samples: int = 1,
        stop_ids: tuple[int, ...] = (),
        pad_id: int = 0,
        max_prompt_len: int = 1024,
        layout=None,
        stage_tokens: int = 0,
    ):
        if num_samples < 1:
            raise SamplingError(f"num_samples (K) must be >= 1, got {num_samples}")
        if max_new_tokens < 1:
            raise SamplingError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model_config, self.max_prompt_len, self.layout = model_config, max_prompt_len, layout
        self.num_samples, self.max_new_tokens, self.pad_id = num_samples, max_new_tokens, pad_id
        stops = tuple(int(s) for s in stop_ids)
        self.stages = stage_ends(max_new_tokens, stage_tokens)
        self._static = (model_config, strategy, max_new_tokens, num_samples, stops, pad_id, self.stages)
        self._compiled: dict = {}

    def _function(self, num_prompts: int):
        if num_prompts not in self._compiled:
            self._compiled[num_prompts] = self._compile(num_prompts)
        return self._compiled[num_prompts]

    def _compile(self, num_prompts: int):
        """The jitted sampler for `num_prompts` prompts: (params, tokens, mask, key) -> outputs."""
        body, shardings = self._decode_body()
        # One uniform number per sample and step, drawn for the whole batch with rows first:
        # a row's numbers depend neither on how the batch is split over devices nor on how
        # many filler rows pad it, so a key gives the same samples on any mesh and bucket.
        shape = (num_prompts * self.num_samples, self.max_new_tokens)

        def sample(params, tokens, mask, key):
            return body(params, tokens, mask, uniforms(key, shape))

        return jax.jit(sample, **shardings)

    def _decode_body(self):
        """`decode` bound to this sampler's settings and mesh, and the shardings to jit it with."""
        layout = self.layout
        if layout is None:
            return functools.partial(decode, *self._static, None), {}
        mesh, rules = layout.mesh, layout.rules
        rows = parallel.partition_spec(("batch",), rules, mesh=mesh)
        prompts = parallel.partition_spec(("batch", None), rules, mesh=mesh)
        if all(s.is_fully_replicated for s in jax.tree.leaves(layout.param_shardings)):
            # Data parallel only: each device decodes its own rows in its own loops, which stop
            # when its rows have; one program for the whole mesh would agree on that across
            # devices after every step.
            body = jax.shard_map(
                functools.partial(decode, *self._static, None),
                mesh=mesh,
                in_specs=(PartitionSpec(), prompts, prompts, PartitionSpec(*rows, None, None)),
                out_specs=(prompts, prompts, rows, rows),
                check_vma=False,  # no collectives inside; the empty caches would need casting
            )
        else:
            body = functools.partial(decode, *self._static, NamedSharding(mesh, _cache_spec(rules, mesh)))
        rows, prompts = NamedSharding(mesh, rows), NamedSharding(mesh, prompts)
        return body, dict(
            in_shardings=(layout.param_shardings, prompts, prompts, parallel.replicated(mesh)),
            out_shardings=(prompts, prompts, rows, rows),
        )

    def batch_multiple(self) -> int:
        """Prompt batches are padded to a multiple of the mesh's batch shards."""
        if self.layout is None:
            return 1
        return parallel.batch_shards(self.layout.mesh, self.layout.rules)

    def __call__(self, params, prompts: list[list[int]], key) -> SamplerOutput:
        if not prompts:
            raise SamplingError("no prompts given")
        for i, prompt in enumerate(prompts):
            if len(prompt) == 0:
                raise SamplingError(f"prompt {i} is empty (it needs at least a BOS token)")
            if len(prompt) > self.max_prompt_len:
                raise SamplingError(
                    f"prompt {i} has {len(prompt)} tokens, more than max_prompt_len {self.max_prompt_len}"
                )
        width = min(bucket(max(map(len, prompts))), bucket(self.max_prompt_len))
        rows = bucket(len(prompts), minimum=1)
        rows = -(-rows // self.batch_multiple()) * self.batch_multiple()
        tokens = np.full((rows, width), self.pad_id, np.int32)
        mask = np.zeros((rows, width), bool)
        for i, prompt in enumerate(prompts):
            tokens[i, width - len(prompt) :], mask[i, width - len(prompt) :] = prompt, True
        mask[len(prompts) :, -1] = True  # filler rows: one token, dropped from the output
        tokens, mask = self._on_mesh(tokens), self._on_mesh(mask)
        out = self._function(rows)(params, tokens, mask, key)
        n = len(prompts) * self.num_samples
        tokens, logprobs, lengths, finished = (x[:n] for x in fetch(out))
        return SamplerOutput(tokens, logprobs, lengths, finished)

    def _on_mesh(self, array: np.ndarray):
        """A prompt array every process holds whole, placed on the mesh. Several processes
        sample the same global batch (each process's devices decode their own rows) and every
        process reads all the samples back."""
        if self.layout is None:
            return array
        spec = parallel.partition_spec(("batch", None), self.layout.rules, mesh=self.layout.mesh)
        return on_mesh(array, NamedSharding(self.layout.mesh, spec))
