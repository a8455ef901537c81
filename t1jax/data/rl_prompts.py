"""Batches of RL prompts with their ground truth, as a resumable, per-process Grain stream, and
`PromptFeed`, which encodes the next batch ahead of time."""

from __future__ import annotations

from collections.abc import Callable

import grain


def prompt_stream(
    problems: list[dict], prompts_per_batch: int, seed: int, process_index: int = 0, process_count: int = 1
) -> grain.IterDataset:
    """Endless lists of problem dicts (whatever fields the reward needs, e.g. "answer").

    Shuffled with `seed`, reshuffled every epoch; process i of n keeps elements i, i+n, ... of
    the global stream, so the processes' prompts are disjoint and together form the global
    batch. The iterator's get_state()/set_state() go into the checkpoint.
    """
    if prompts_per_batch % process_count:
        raise ValueError(f"{prompts_per_batch} prompts per batch must divide among {process_count} processes")
    stream = grain.MapDataset.source(problems).seed(seed).shuffle().repeat(None)
    return (
        stream[process_index::process_count].batch(prompts_per_batch // process_count, batch_fn=list).to_iter_dataset()
    )


class PromptFeed:
    """(problems, encoded prompts) batches of a prompt stream. `prefetch()` draws and encodes the
    next batch early (the RL loop calls it while the last batch's samples are graded); the state
    is always that of the next batch `next()` returns, so a checkpoint taken with a batch drawn
    ahead resumes with that batch, not after it."""

    def __init__(self, stream: grain.IterDataset, encode: Callable[[dict], list[int]]):
        self._iterator = iter(stream)
        self._encode = encode
        self._ahead: tuple[dict, list[dict], list[list[int]]] | None = None  # (state before it, problems, prompts)

    def prefetch(self) -> None:
        if self._ahead is None:
            state = self._iterator.get_state()
            problems = next(self._iterator)
            self._ahead = (state, problems, [self._encode(p) for p in problems])

    def next(self) -> tuple[list[dict], list[list[int]]]:
        self.prefetch()
        _, problems, prompts = self._ahead
        self._ahead = None
        return problems, prompts

    def get_state(self) -> dict:
        return self._ahead[0] if self._ahead is not None else self._iterator.get_state()

    def set_state(self, state: dict) -> None:
        self._ahead = None
        self._iterator.set_state(state)
