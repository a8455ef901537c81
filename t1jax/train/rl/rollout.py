"""The samples of one RL step, P prompts x K samples each ("groups"), and how they are graded.

Grading asks the run's verifier (t1jax.rewards.verifiers: a built-in task's exact verifier or
the symbolic math grader) about every sample; the T1 penalties then replace the reward of
truncated, repetitive or garbage samples (t1jax.rewards.penalties). The raw correctness is kept
beside the reward: selection (selection.py) reads only it.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from t1jax.rewards.grading import Verdict
from t1jax.rewards.penalties import PenaltyConfig, RewardBreakdown, penalty_flags, shaped_rewards
from t1jax.rewards.pool import BatchResult

VERDICTS = tuple(Verdict)


@dataclasses.dataclass
class RolloutGroups:
    prompts: list[list[int]]  # P prompt token lists
    tokens: np.ndarray  # int32 [P, K, M] generated tokens (padding after the stop)
    lengths: np.ndarray  # [P, K] generated tokens including the stop token
    logprobs: np.ndarray  # [P, K, M] log pi_old of each generated token
    correct: np.ndarray  # bool [P, K] raw correctness (selection reads only this)
    reward: np.ndarray  # [P, K] correctness reward with T1's penalties applied
    truncated: np.ndarray  # bool [P, K]
    repetitive: np.ndarray  # bool [P, K]
    garbage: np.ndarray  # bool [P, K]

    @classmethod
    def from_samples(cls, prompts, out, breakdown, K: int) -> RolloutGroups:
        P = len(prompts)

        def grouped(x):
            return np.asarray(x).reshape(P, K, *np.shape(x)[1:])

        return cls(
            list(prompts),
            grouped(out.tokens),
            grouped(out.lengths),
            grouped(out.logprobs),
            grouped(breakdown.correct),
            grouped(breakdown.reward),
            grouped(breakdown.truncated),
            grouped(breakdown.repetitive),
            grouped(breakdown.garbage),
        )

    def __len__(self) -> int:
        return len(self.prompts)

    def _arrays(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "prompts"}

    def take(self, groups) -> RolloutGroups:
        groups = np.asarray(groups, np.int64)[: len(self)]
        return RolloutGroups([self.prompts[i] for i in groups], **{k: v[groups] for k, v in self._arrays().items()})

    def keep_samples(self, per_group: list[np.ndarray]) -> RolloutGroups:
        """Keeps the given sample indices of every group (the same count in each)."""
        arrays = {k: np.stack([v[g][idx] for g, idx in enumerate(per_group)]) for k, v in self._arrays().items()}
        return RolloutGroups(self.prompts, **arrays)

    @staticmethod
    def concatenate(parts: list[RolloutGroups]) -> RolloutGroups:
        arrays = {k: np.concatenate([p._arrays()[k] for p in parts]) for k in parts[0]._arrays()}
        return RolloutGroups([q for p in parts for q in p.prompts], **arrays)

    def rates(self) -> dict:
        """Statistics of everything sampled (before selection)."""
        return {
            "accuracy": float(self.correct.mean()),
            "reward": float(self.reward.mean()),
            "response_length": float(self.lengths.mean()),
            "truncated_rate": float(self.truncated.mean()),
            "repetitive_rate": float(self.repetitive.mean()),
            "garbage_rate": float(self.garbage.mean()),
            "sampled_tokens": float(self.lengths.sum()),
        }

    def summary(self) -> dict:
        """Statistics of what the update trains on."""
        return {
            "groups_trained": float(len(self)),
            "trained_accuracy": float(self.correct.mean()) if len(self) else 0.0,
        }


def responses(out) -> list[np.ndarray]:
    """Each sample's generated tokens (through its stop token)."""
    return [out.tokens[i, : out.lengths[i]] for i in range(len(out.tokens))]


def grade_and_penalise(
    verifier,
    executor: Executor,
    tokenizer,
    problems: list[dict],
    out,
    K: int,
    penalties: PenaltyConfig,
    meanwhile: Callable[[], object] = lambda: None,
    share: Callable[[int], slice] = lambda total: slice(0, total),
    gather: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> tuple[RewardBreakdown, BatchResult, float]:
    """Rewards of P x K samples (sample i answers problems[i // K]): (the rewards, the verdicts,
    the seconds spent waiting for them).

    The verifier grades on `executor` while this thread finds the penalty flags and runs
    `meanwhile()` (the loop encodes its next prompts), so the grading pool's latency is hidden
    behind that work. A timed-out or failed item is a wrong answer (its verdict says which).
    With several processes (each holding all the samples) each grades its `share(N)` of them
    and `gather(codes, N)` exchanges the verdicts' codes (t1jax.parallel.host_data's
    process_share and gather_shares); by default one process grades all."""
    mine = share(len(out.tokens))
    texts = [tokenizer.decode(ids) for ids in responses(out)[mine]]
    items = range(len(out.tokens))[mine]
    grading = executor.submit(verifier.verify_batch, [problems[i // K] for i in items], texts)
    flags = penalty_flags(responses(out), out.truncated, penalties)
    meanwhile()
    started = time.perf_counter()
    verdicts = _all_verdicts(grading.result(), len(out.tokens), gather)
    return shaped_rewards(verdicts.correct, flags, penalties), verdicts, time.perf_counter() - started


def _all_verdicts(local: BatchResult, total: int, gather) -> BatchResult:
    """Every process's verdicts on its share of `total` samples, in order (the grading time is
    this process's own)."""
    if gather is None:
        return local
    codes = gather(np.array([VERDICTS.index(v) for v in local.verdicts], np.int32), total)
    return BatchResult(tuple(VERDICTS[c] for c in codes), local.elapsed_s)


def grading_metrics(results: list[BatchResult], waited_s: float) -> dict:
    """Grading of one step (all its rounds): wall time, time the loop waited, and how many items
    timed out, failed in the grader or gave no answer."""
    counts = collections.Counter()
    for result in results:
        counts.update(result.counts)
    return {
        "time_grade": float(sum(r.elapsed_s for r in results)),
        "time_grade_wait": float(waited_s),
        "grade_timeouts": counts["timed_out"],
        "grade_errors": counts["error"],
        "grade_no_answer": counts["no_answer"],
    }
