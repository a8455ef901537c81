"""How the next token is chosen: small frozen (hashable, jit-static) dataclasses."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from t1jax.errors import SamplingError

_NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Always the most likely token."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """Draw from softmax(logits / temperature), restricted by any combination of filters.

    top_k: keep the k most likely tokens (0: off). top_p: keep the smallest set of most likely
    tokens whose probability reaches top_p (1.0: off). min_p: keep tokens whose probability is
    at least min_p times that of the most likely one (0.0: off). Filters apply after the
    temperature, in the order top-k, top-p, min-p; the most likely token always survives.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise SamplingError(f"temperature must be > 0, got {self.temperature} (use Greedy() for argmax)")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise SamplingError(f"min_p must be in [0, 1), got {self.min_p}")


Strategy = Greedy | Sample


def filtered_logits(logits_BV, strategy: Sample):
    """Logits scaled by 1/temperature with the filtered-out tokens set to -inf."""
    logits = logits_BV.astype(jnp.float32) / strategy.temperature
    if strategy.top_k:
        kth = jax.lax.top_k(logits, strategy.top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, _NEG_INF, logits)
    if strategy.top_p < 1.0:
        sorted_desc = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        # mass of strictly more likely tokens: a token is kept while that is below top_p
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = mass_before < strategy.top_p
        threshold = jnp.min(jnp.where(kept, sorted_desc, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, _NEG_INF, logits)
    if strategy.min_p > 0.0:
        log_max = jnp.max(logits, axis=-1, keepdims=True)
        logits = jnp.where(logits < log_max + jnp.log(strategy.min_p), _NEG_INF, logits)
    return logits


def choose(key, logits_BV, strategy: Strategy):
    """The next token of every row."""
    return choose_with_uniforms(uniforms(key, logits_BV.shape[:-1]), logits_BV, strategy)


def uniforms(key, shape) -> jax.Array:
    """The uniform numbers in [0, 1) that choose_with_uniforms takes: `shape` + (1,)."""
    return jax.random.uniform(key, (*shape, 1), jnp.float32)


def choose_with_uniforms(u_B1, logits_BV, strategy: Strategy):
    """The next token of every row, drawn with the given uniform numbers (ignored by Greedy).

    A token is drawn from softmax(filtered logits) by inverting its cumulative distribution
    with one uniform number per row (see invert_cdf). Gumbel-max (jax.random.categorical)
    needs a random number per vocabulary entry, two logs and an argmax (a variadic reduce,
    which XLA's CPU backend does not vectorize): at batch 64 and a vocabulary of 512 that was
    ~6% of a decode step. The sampler draws every step's numbers before its decode loop."""
    if isinstance(strategy, Greedy):
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    return invert_cdf(filtered_logits(logits_BV, strategy), u_B1)


def invert_cdf(logits_BV, u_B1):
    """The first token whose cumulative probability exceeds u (in [0, 1)), per row.

    Tokens with zero probability (filtered to -inf) are never chosen, even where rounding
    puts u * total on a boundary; if it puts it at the total, the most likely token is."""
    logits = logits_BV.astype(jnp.float32)
    top = jnp.max(logits, axis=-1, keepdims=True)
    mass = jnp.exp(logits - top)
    cdf = jnp.cumsum(mass, axis=-1)
    vocab = jnp.arange(logits.shape[-1], dtype=jnp.int32)
    past = (cdf > u_B1 * cdf[..., -1:]) & (mass > 0)
    chosen = jnp.min(jnp.where(past, vocab, logits.shape[-1]), axis=-1)
    most_likely = jnp.min(jnp.where(logits == top, vocab, logits.shape[-1]), axis=-1)
    return jnp.where(chosen < logits.shape[-1], chosen, most_likely)


def strategy_for(section, temperature: float | None = None) -> Strategy:
    """The strategy a config's sampling settings describe (`sampling`, `rl.sampling` or
    `eval.sampling`: temperature 0 is greedy; top_k, top_p and min_p filter a sample), at
    `temperature` instead of the section's if given."""
    temperature = section.temperature if temperature is None else temperature
    if temperature == 0:
        return Greedy()
    return Sample(temperature=temperature, top_k=section.top_k, top_p=section.top_p, min_p=section.min_p)
