"""The samples of one RL step, P prompts x K samples each ("groups"), and how they are graded.

Grading reads the final answer of every sample and asks the task's verifier; the T1 penalties
then replace the reward of truncated, repetitive or garbage samples (t1jax.rewards.penalties).
The raw correctness is kept beside the reward: selection (selection.py) reads only it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from t1jax.data.synthesis import extract_final_answer
from t1jax.rewards.penalties import PenaltyConfig, RewardBreakdown, apply_penalties


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


def grade(task, tokenizer, problems: list[dict], out, K: int) -> np.ndarray:
    """bool [P * K]: whether sample i's final answer solves problems[i // K] (the task's verifier)."""
    texts = [tokenizer.decode(ids) for ids in responses(out)]
    return np.array([task.verify(problems[i // K], extract_final_answer(t) or "") for i, t in enumerate(texts)])


def penalise(correct: np.ndarray, out, penalties: PenaltyConfig) -> RewardBreakdown:
    """The rewards: correctness, or the penalty for truncated, repetitive or garbage samples."""
    return apply_penalties(correct, responses(out), out.truncated, penalties)
