"""Batches of RL prompts with their ground truth, as a resumable, per-process Grain stream."""

from __future__ import annotations

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
