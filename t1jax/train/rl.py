"""The T1 RL loop. Each step reads like the recipe:

    prompts -> sample K each -> grade + penalise -> select -> KL-normalised rewards -> RLOO
    advantages -> policy-gradient update(s) -> move the anchor -> checkpoint -> log

A killed run restarted with the same command resumes from its last checkpoint (policy,
optimizer, anchor, prompt iterator, RNG, step) and, on CPU, repeats the same metric stream.
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from t1jax import parallel
from t1jax.config import with_overrides
from t1jax.data.rl_prompts import prompt_stream
from t1jax.data.synthesis import extract_final_answer
from t1jax.data.tasks import task_from_config
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import ConfigError, TrainingError
from t1jax.rewards.penalties import PenaltyConfig, apply_penalties
from t1jax.sampling import Sample, Sampler
from t1jax.train.checkpoint import Checkpointer, restore_params
from t1jax.train.metrics import MetricsWriter
from t1jax.train.progress import Progress
from t1jax.train.rl_batch import RolloutGroups, build_batch, loss_weights, row_length, shaped_advantages
from t1jax.train.rl_step import BATCH_KEYS, make_anchor_update, make_rl_step, make_score_fn
from t1jax.train.selection import has_signal, keep_m_of_k
from t1jax.train.state import layout_from_config


class RLRun:
    """Everything one RL run needs, built once from its config."""

    def __init__(self, config):
        parallel.initialize(config.distributed)
        self.config, r = config, config.rl
        self.workdir = pathlib.Path(config.run.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tokenizer = self._tokenizer()
        self.task = task_from_config(config, r.task)
        updates = r.num_steps * r.num_passes * r.minibatches
        rl_optim = {
            "optim.learning_rate": r.learning_rate,
            "optim.warmup_steps": r.warmup_steps,
            "optim.trainable": r.trainable,
        }
        self.layout = layout_from_config(with_overrides(config, rl_optim), updates)
        self.groups_per_update = r.prompts_per_step // r.minibatches
        self.samples_kept = r.keep_per_prompt or r.samples_per_prompt
        self.sampler = Sampler(
            self.layout.model_config,
            Sample(temperature=r.temperature, top_p=r.top_p),
            r.max_new_tokens,
            r.samples_per_prompt,
            (self.tokenizer.eos_id,),
            self.tokenizer.pad_id,
            config.sampling.max_prompt_len,
            self.layout,
            config.sampling.stage_tokens,
        )
        self.penalties = PenaltyConfig(
            enabled=r.penalties,
            penalty=r.penalty,
            ngram=r.repeat_ngram,
            max_repeats=r.repeat_max,
            garbage_ids=self.tokenizer.garbage_ids(),
            max_garbage_fraction=r.garbage_fraction,
        )
        # Rows of an update split evenly into minibatches, micro-batches and batch shards.
        shards = parallel.batch_shards(self.layout.mesh, self.layout.rules)
        self.row_multiple = r.minibatches * r.grad_accum_steps * shards
        self.score = make_score_fn(self.layout)
        self.update = make_rl_step(self.layout, r, r.grad_accum_steps)
        self.move_anchor = make_anchor_update(self.layout, r.anchor_mu)
        problems = self.task.generate("train", r.num_prompts, config.run.seed)
        self.prompts = iter(
            prompt_stream(problems, r.prompts_per_step, config.run.seed, jax.process_index(), jax.process_count())
        )

    def _tokenizer(self) -> Tokenizer:
        for candidate in (
            self.config.sft.tokenizer_path,
            _join(self.config.rl.init_from, "tokenizer.model"),
            str(self.workdir / "tokenizer.model"),
        ):
            if candidate and pathlib.Path(candidate).is_file():
                tokenizer = Tokenizer.load(candidate)
                if jax.process_index() == 0 and not (self.workdir / "tokenizer.model").is_file():
                    tokenizer.save(str(self.workdir / "tokenizer.model"))
                return tokenizer
        raise ConfigError("RL needs a tokenizer: set rl.init_from to an SFT run's workdir or sft.tokenizer_path")

    def initial_state(self):
        """(state, anchor, data_state): the RL checkpoint if there is one, else the SFT weights."""
        abstract = {"policy": self.layout.abstract_state(), "anchor": self.layout.abstract_state().params}
        self.checkpointer = Checkpointer(
            str(self.workdir / "checkpoints"), self.config.checkpoint.max_to_keep, self.config.checkpoint.async_save
        )
        restored = self.checkpointer.restore(abstract)
        if restored is not None:
            saved, data_state = restored
            return saved["policy"], saved["anchor"], data_state
        state = self.layout.init(self.config.run.seed)
        if self.config.rl.init_from:
            params = restore_params(self.config.rl.init_from, self.layout.abstract_state(), "rl.init_from")
            state = state.replace(params=params)
        anchor = jax.tree.map(lambda x: x.copy(), state.params)
        return state, anchor, None

    def rollout(self, params, step: int, rng) -> tuple[RolloutGroups, dict]:
        """Samples groups until `prompts_per_step` have signal (or the refill rounds run out)."""
        r = self.config.rl
        kept, stats = [], {"groups_sampled": 0, "groups_filtered": 0}
        first_round = None
        for round_ in range(r.max_refill_rounds + 1):
            problems = next(self.prompts)
            encoded = [self.tokenizer.encode_prompt(self.task.prompt(p)) for p in problems]
            key = jax.random.fold_in(jax.random.fold_in(rng, step), round_)
            out = self.sampler(params, encoded, key)
            groups = self.grade(problems, encoded, out)
            first_round = groups if first_round is None else first_round
            stats["groups_sampled"] += len(problems)
            signal = has_signal(groups.correct) if r.filter_zero_variance else np.ones(len(problems), bool)
            stats["groups_filtered"] += int((~signal).sum())
            kept.append(groups.take(np.flatnonzero(signal)))
            if sum(len(g) for g in kept) >= r.prompts_per_step:
                break
        selected = RolloutGroups.concatenate(kept).take(np.arange(r.prompts_per_step))
        if r.keep_per_prompt:
            rng_np = np.random.default_rng([self.config.run.seed, step])
            selected = selected.keep_samples([keep_m_of_k(c, r.keep_per_prompt, rng_np) for c in selected.correct])
        return selected, {**stats, **first_round.rates()}

    def grade(self, problems, encoded, out) -> RolloutGroups:
        K = self.sampler.num_samples
        texts = [self.tokenizer.decode(out.tokens[i, : out.lengths[i]]) for i in range(len(out.tokens))]
        correct = np.array(
            [self.task.verify(problems[i // K], extract_final_answer(t) or "") for i, t in enumerate(texts)]
        )
        generated = [out.tokens[i, : out.lengths[i]] for i in range(len(out.tokens))]
        breakdown = apply_penalties(correct, generated, out.truncated, self.penalties)
        return RolloutGroups.from_samples(encoded, out, breakdown, K)

    def batch(self, groups: RolloutGroups) -> dict:
        """The update's per-token arrays (rl_batch.build_batch): unpacked, a static shape of
        prompts_per_step x kept samples rows; packed (rl.pack), rows pack_factor times as long,
        as many as needed in steps of 1/8 of the unpacked count, so a run compiles the update
        for a few row counts only."""
        r, pad = self.config.rl, self.tokenizer.pad_id
        capacity = r.prompts_per_step * self.samples_kept
        if not r.pack:
            return build_batch(groups, pad, row_length(groups), min_rows=capacity, row_multiple=self.row_multiple)
        quantum = self.row_multiple * max(1, capacity // (8 * self.row_multiple))
        return build_batch(groups, pad, row_length(groups) * r.pack_factor, pack=True, row_multiple=quantum)

    def advantages(self, groups: RolloutGroups, anchor, batch) -> tuple[dict, dict]:
        """Scores the batch under the anchor, shapes rewards with normalised KL, then RLOO."""
        r = self.config.rl
        ref_logp = np.asarray(self.score(anchor, batch["tokens"], batch["positions"], batch["segment_ids"]))
        advantage, kl_PK = shaped_advantages(groups, batch, ref_logp, r.kl_beta, r.kl_estimator)
        return {**batch, "ref_logp": ref_logp, "advantage": advantage}, {"kl_sequence": float(kl_PK.mean())}

    def train(self, state, anchor, groups: RolloutGroups):
        """The update part of a step: the batch, its anchor scores and advantages, then
        num_passes x minibatches optimizer steps. Returns (state, the last step's metrics,
        statistics of the batch)."""
        r = self.config.rl
        batch, stats = self.advantages(groups, anchor, self.batch(groups))
        stats.update(update_rows=len(batch["tokens"]), update_row_fill=float(np.mean(batch["segment_ids"] > 0)))
        metrics = {}
        for _ in range(r.num_passes):
            for part in _minibatches(batch, r.minibatches):
                part["loss_weight"] = loss_weights(part, r.aggregation)
                state, metrics = self.update(state, {k: part[k] for k in BATCH_KEYS})
        return state, metrics, stats


def run_rl(config) -> dict:
    """Runs (or resumes) T1 RL for config.rl.num_steps steps; returns the last metrics."""
    run = RLRun(config)
    r = config.rl
    state, anchor, data_state = run.initial_state()
    if data_state:
        run.prompts.set_state(data_state["prompts"])
    start = int(state.step) // (r.num_passes * r.minibatches)
    is_primary = jax.process_index() == 0
    writer = MetricsWriter(str(run.workdir), tensorboard=config.run.tensorboard, is_primary=is_primary)
    progress = Progress(r.num_steps, "rl", enabled=config.run.progress and is_primary, start=start)
    metrics: dict = {}
    try:
        for step in range(start + 1, r.num_steps + 1):
            t0 = time.perf_counter()
            groups, metrics = run.rollout(state.params, step, state.rng)
            t1 = time.perf_counter()
            update_metrics, batch_stats = {}, {"kl_sequence": 0.0, "update_rows": 0, "update_row_fill": 0.0}
            if len(groups):  # else nothing had signal even after refilling: no update this step
                state, update_metrics, batch_stats = run.train(state, anchor, groups)
                if not np.isfinite(float(update_metrics["loss"])):
                    raise TrainingError(
                        f"RL step {step}: the loss is not finite; stopping with the last good "
                        f"checkpoint (step {run.checkpointer.latest_step()}) kept"
                    )
            if r.anchor_every and step % r.anchor_every == 0:
                anchor = run.move_anchor(anchor, state.params)
            t2 = time.perf_counter()
            metrics.update(batch_stats, **{k: float(v) for k, v in update_metrics.items()})
            metrics.update(
                groups.summary(),
                time_sample_grade=t1 - t0,
                time_update=t2 - t1,
                sampled_tokens_per_s=metrics.pop("sampled_tokens") / (t1 - t0),
            )
            writer.write(step, metrics)  # before the checkpoint: a kill between the two must not lose this step's line
            if step % config.checkpoint.save_every == 0 or step == r.num_steps:
                run.checkpointer.save(step, {"policy": state, "anchor": anchor}, {"prompts": run.prompts.get_state()})
            progress.update(step, acc=metrics["accuracy"], reward=metrics["reward"])
        run.checkpointer.wait()
    finally:
        progress.close()
        writer.close()
        run.checkpointer.close()
    return {"workdir": str(run.workdir), "final_step": r.num_steps, "start_step": start, **metrics}


def _minibatches(batch: dict, count: int):
    """`count` equal slices of the rows (RLRun.batch makes the row count a multiple of it)."""
    size = len(batch["tokens"]) // count
    for i in range(count):
        yield {k: v[i * size : (i + 1) * size] for k, v in batch.items()}


def _join(directory: str, name: str) -> str:
    return str(pathlib.Path(directory) / name) if directory else ""
