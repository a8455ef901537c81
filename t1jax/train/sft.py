"""The SFT loop: data -> tokenizer -> sharded state -> steps -> validation -> checkpoints.

Restarting with the same config continues from the latest checkpoint with the same data
order, so a killed run loses at most the steps since its last save.
"""

from __future__ import annotations

import functools
import pathlib
import random
import sys
import time

import jax
import numpy as np

from t1jax import parallel
from t1jax.config import with_overrides
from t1jax.data.drills import check_drills
from t1jax.data.jsonl import read_jsonl
from t1jax.data.sft_batches import batch_stream, encode_examples, fixed_batches
from t1jax.data.synthesis import sft_examples
from t1jax.data.tasks import task_from_config
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import ConfigError
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.metrics import MetricsWriter, read_metrics
from t1jax.runtime.preemption import StopOnSignal
from t1jax.runtime.progress import Progress
from t1jax.runtime.run_dir import (
    check_run_dir,
    has_tokenizer,
    load_params,
    make_workdir,
    run_tokenizer,
    save_run_config,
    save_run_tokenizer,
)
from t1jax.train.frozen_base import frozen_base
from t1jax.train.guards import check_finite
from t1jax.train.optimizer import learning_rate_schedule
from t1jax.train.sft_step import make_eval_loss, make_sft_step, sft_micro_batches
from t1jax.train.state import frozen_args, layout_from_config


def load_examples(config, seed: int) -> tuple[list[dict], list[dict], str]:
    """(train, validation, summary): the JSONL file split by eval_fraction, or the built-in task's
    synthesized trial-and-error traces (or check drills) of its train and validation splits."""
    s = config.sft
    if s.data_path:
        data = read_jsonl(s.data_path, (s.prompt_field, s.response_field), strict=s.strict_data)
        train, validation = split_examples(data.records, s.eval_fraction, seed)
        return train, validation, data.summary()
    task = task_from_config(config, s.task)
    if s.source == "drills":
        # A fresh document for every row trained on: drills cost nothing to make, and a document
        # seen again can be recalled whole instead of computed.
        make, num_train = check_drills, s.num_steps * s.batch_size
    else:
        make = functools.partial(sft_examples, max_failed=s.max_failed, retry_prob=s.retry_prob)
        num_train = s.num_builtin_examples
    train = make(task, "train", num_train, seed)
    num_validation = max(1, round(num_train * s.eval_fraction)) if s.eval_fraction else 0
    validation = make(task, "validation", num_validation, seed) if num_validation else []
    return train, validation, f"built-in task {s.task}: {len(train)} train, {len(validation)} validation {s.source}"


def sft_tokenizer(config, examples: list[dict], workdir: pathlib.Path) -> Tokenizer:
    """The configured tokenizer file, the one saved in the workdir, that of sft.init_from, or a new
    one trained on the data; a copy stays in the workdir, so the run directory is self-contained."""
    s, saved = config.sft, has_tokenizer(workdir)
    if s.tokenizer_path or saved:
        tokenizer = run_tokenizer(workdir, s.tokenizer_path)
    elif s.init_from:
        tokenizer = run_tokenizer(check_run_dir(s.init_from, "sft.init_from").parent)
    else:
        if s.source == "drills" and not s.data_path:
            # The SFT on traces that follows the drills keeps this tokenizer, so it is trained on
            # those traces (drills are made of pieces of their check lines): the same tokenizer a
            # run on traces alone would train.
            train, validation, _ = load_examples(with_overrides(config, {"sft.source": "traces"}), config.run.seed)
            examples = train + validation
        texts = (e[field] for e in examples for field in (s.prompt_field, s.response_field))
        tokenizer = Tokenizer.train(texts, config.model.vocab_size)
    if not saved:
        save_run_tokenizer(tokenizer, workdir)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} pieces but model.vocab_size is "
            f"{config.model.vocab_size}; raise model.vocab_size"
        )
    return tokenizer


def split_examples(examples: list[dict], eval_fraction: float, seed: int):
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    num_eval = round(len(examples) * eval_fraction)
    return [examples[i] for i in order[num_eval:]], [examples[i] for i in order[:num_eval]]


def run_sft(config) -> dict:
    """Trains for config.sft.num_steps steps (resuming if possible); returns a summary."""
    parallel.initialize(config.distributed)
    s, run = config.sft, config.run
    workdir = make_workdir(run.workdir)

    train_examples, eval_examples, data_summary = load_examples(config, run.seed)
    print(f"sft data: {data_summary}", file=sys.stderr)
    save_run_config(workdir, config)
    tokenizer = sft_tokenizer(config, train_examples + eval_examples, workdir)
    fields = (s.prompt_field, s.response_field, config.data.prompt_format)
    train_data = encode_examples(train_examples, tokenizer, s.seq_len, *fields)
    eval_data = None
    if eval_examples:
        eval_data = encode_examples(eval_examples, tokenizer, s.seq_len, *fields)
    if train_data.num_truncated:
        print(
            f"sft data: {train_data.num_truncated} of {len(train_examples)} training examples are longer than "
            f"sft.seq_len={s.seq_len} tokens and were cut (their ends get no loss)",
            file=sys.stderr,
        )

    layout = layout_from_config(config, s.num_steps)
    batch_sh = parallel.batch_sharding(layout.mesh, layout.rules)
    micro_batches = sft_micro_batches(s, layout.mesh, layout.rules)

    batches = iter(
        batch_stream(train_data, s.batch_size, run.seed, jax.process_index(), jax.process_count(), pack=s.pack)
    )
    checkpointer = Checkpointer(
        str(workdir / "checkpoints"), config.checkpoint.max_to_keep, config.checkpoint.async_save
    )
    restored = checkpointer.restore(layout.abstract_state(), set_aside_unusable=True)
    # LoRA: sft.init_from gives the frozen base, and the state holds fresh adapters
    base = frozen_base(layout, workdir, config, s.init_from, "sft.init_from", resuming=restored is not None)
    if restored is None:
        state = layout.init(run.seed)
        if s.init_from and base is None:
            state = state.replace(params=load_params(s.init_from, layout, key="sft.init_from"))
    else:
        state, data_state = restored
        batches.set_state(data_state)
    start_step = int(state.step)

    chunk = config.optim.logits_chunk_tokens
    frozen = frozen_args(base)
    train_step = make_sft_step(layout, learning_rate_schedule(config.optim, s.num_steps), micro_batches, chunk)
    eval_loss = make_eval_loss(layout, chunk)

    def step_fn(state, batch):
        return train_step(state, *frozen, batch)

    def eval_fn(params, batch):
        return eval_loss(params, *frozen, batch)

    is_primary = jax.process_index() == 0
    writer = MetricsWriter(
        str(workdir),
        run.tensorboard,
        is_primary,
        wandb_project=run.wandb_project,
        wandb_run_name=str(workdir),
        config=config,
        resume_step=start_step,
    )
    progress = Progress(s.num_steps, "sft", enabled=run.progress and is_primary, start=start_step)
    summary = {
        "workdir": str(workdir),
        "data": data_summary,
        "start_step": start_step,
        "num_truncated": train_data.num_truncated,
        "num_train_examples": len(train_examples),
        "num_eval_examples": len(eval_examples),
        "stopped_early": False,
    }
    tokens_per_step = s.batch_size * s.seq_len
    stopper = EarlyStopping(s.patience, s.min_improvement, _val_history(workdir, start_step))
    summary["stopped_early"] = stopper.stopped  # a resumed run that had already stopped trains no further
    with StopOnSignal() as stop:
        try:
            last_time, last_step = time.perf_counter(), start_step
            for step in range(start_step + 1, 0 if stopper.stopped else s.num_steps + 1):
                state, metrics = step_fn(state, parallel.to_global(next(batches), batch_sh))
                check_finite("SFT", step, metrics, checkpointer.latest_step(), "a lower optim.learning_rate may help")
                final = step == s.num_steps
                if step % run.log_every == 0 or final:
                    metrics = {k: float(v) for k, v in metrics.items()}
                    now = time.perf_counter()
                    metrics["tokens_per_s"] = tokens_per_step * (step - last_step) / (now - last_time)
                    last_time, last_step = now, step
                    writer.write(step, metrics)
                    progress.update(step, loss=metrics["loss"])
                    summary["train_loss"] = metrics["loss"]
                if eval_data is not None and (step % s.eval_every == 0 or final):
                    summary["val_loss"] = validation_loss(eval_fn, state.params, eval_data, s.batch_size, batch_sh)
                    writer.write(step, {"loss": summary["val_loss"]}, prefix="val_")
                    if stopper.update(summary["val_loss"]) and not final:
                        print(
                            f"sft: validation loss has not improved by {s.min_improvement:.0%} for {s.patience} "
                            f"evaluations (best {stopper.best:.4f}); stopping at step {step}",
                            file=sys.stderr,
                        )
                        final, summary["stopped_early"] = True, True
                if step % config.checkpoint.save_every == 0 or final:
                    checkpointer.save(step, state, batches.get_state(), force=True)
                if final:
                    break
                if stop.requested(step):
                    if step % config.checkpoint.save_every:  # else saved just above
                        checkpointer.save(step, state, batches.get_state(), force=True)
                    checkpointer.wait()
                    raise stop.stopped(step)
            checkpointer.wait()
        finally:
            progress.close()
            writer.close()
            checkpointer.close()
    summary["final_step"] = int(state.step)
    return summary


class EarlyStopping:
    """Stop when `patience` evaluations in a row fail to beat the best validation loss by the
    fraction `min_improvement` (patience 0: never stop)."""

    def __init__(self, patience: int, min_improvement: float, history: list[float] = ()):
        self.patience, self.min_improvement = patience, min_improvement
        self.best, self.since_best = float("inf"), 0
        for loss in history:
            self.update(loss)

    def update(self, loss: float) -> bool:
        """Records one validation loss; True when training should stop."""
        if loss < self.best * (1 - self.min_improvement):
            self.best, self.since_best = loss, 0
        else:
            self.best, self.since_best = min(self.best, loss), self.since_best + 1
        return self.stopped

    @property
    def stopped(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience


def _val_history(workdir: pathlib.Path, up_to_step: int) -> list[float]:
    """Validation losses logged up to a resumed checkpoint, so early stopping resumes too."""
    path = workdir / "metrics.jsonl"
    if not up_to_step or not path.is_file():
        return []
    losses = {r["step"]: r["val_loss"] for r in read_metrics(str(path)) if "val_loss" in r and r["step"] <= up_to_step}
    return [losses[step] for step in sorted(losses)]


def validation_loss(eval_fn, params, data, batch_size: int, batch_sharding) -> float:
    """Mean next-token loss over every response token of the held-out examples."""
    total, count = 0.0, 0.0
    for batch in fixed_batches(data, batch_size):
        nll, n = eval_fn(params, parallel.to_global(_local_rows(batch), batch_sharding))
        total, count = total + float(nll), count + float(n)
    return total / max(count, 1.0)


def _local_rows(batch: dict) -> dict:
    """This process's slice of a batch that every process holds in full."""
    n, i = jax.process_count(), jax.process_index()
    rows = len(batch["tokens"]) // n
    return {k: np.ascontiguousarray(v[i * rows : (i + 1) * rows]) for k, v in batch.items()}
