"""Sampled groups (P prompts x K samples) and the padded arrays the RL update trains on."""

from __future__ import annotations

import dataclasses

import numpy as np

from t1jax.sampling import bucket


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


def pad_groups(groups: RolloutGroups, count: int, pad_prompt_token: int = 0) -> RolloutGroups:
    """Exactly `count` groups (a static batch shape): missing ones are empty (no response tokens)."""
    missing = count - len(groups)
    if missing <= 0:
        return groups.take(np.arange(count))
    K, M = groups.tokens.shape[1:]
    flags = {name: np.zeros((missing, K), bool) for name in ("correct", "truncated", "repetitive", "garbage")}
    filler = RolloutGroups(
        prompts=[[pad_prompt_token]] * missing,
        tokens=np.zeros((missing, K, M), np.int32),
        lengths=np.zeros((missing, K), np.int32),
        logprobs=np.zeros((missing, K, M), np.float32),
        reward=np.zeros((missing, K), np.float32),
        **flags,
    )
    return RolloutGroups.concatenate([groups, filler])


def build_batch(groups: RolloutGroups, pad_id: int) -> dict:
    """Arrays [N = P*K, Lp + M]: left-padded prompt, then the response (see rl_step.BATCH_KEYS)."""
    P, K, M = groups.tokens.shape
    width = bucket(max(len(p) for p in groups.prompts))
    N, L = P * K, width + M
    tokens = np.full((N, L), pad_id, np.int32)
    valid = np.zeros((N, L), bool)
    response = np.zeros((N, L), bool)
    old_logp = np.zeros((N, L), np.float32)
    for p, prompt in enumerate(groups.prompts):
        for k in range(K):
            row, n = p * K + k, int(groups.lengths[p, k])
            tokens[row, width - len(prompt) : width] = prompt
            tokens[row, width : width + n] = groups.tokens[p, k, :n]
            valid[row, width - len(prompt) : width + n] = True
            response[row, width : width + n] = True
            old_logp[row, width : width + n] = groups.logprobs[p, k, :n]
    return {"tokens": tokens, "valid": valid, "response": response, "old_logp": old_logp}
