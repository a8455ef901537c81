"""The T1 RL loop. `rl_step` is the recipe, top-down:

    sample K per prompt -> grade -> penalties -> drop zero-variance groups and refill -> keep M
    of K -> pack -> anchor log-probs -> KL-normalised rewards -> RLOO advantages -> update
    (clipped policy gradient + entropy bonus) -> move the anchor when due

and `run_rl` repeats it, checkpointing and logging. A killed run restarted with the same command
resumes from its last checkpoint (policy, optimizer, anchor, prompt iterator, RNG, step) and, on
CPU, repeats the same metric stream.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from t1jax import parallel
from t1jax.config import with_overrides
from t1jax.data.chat import format_prompt, stop_ids
from t1jax.data.rl_prompts import PromptFeed, prompt_stream
from t1jax.errors import ConfigError
from t1jax.parallel.host_data import fetch, gather_shares, on_mesh, process_share, several_processes
from t1jax.rewards.penalties import PenaltyConfig
from t1jax.runtime.checkpoint import Checkpointer
from t1jax.runtime.metrics import MetricsWriter
from t1jax.runtime.preemption import StopOnSignal
from t1jax.runtime.progress import Progress
from t1jax.runtime.run_dir import (
    check_run_dir,
    has_tokenizer,
    load_run,
    make_workdir,
    run_tokenizer,
    save_run_config,
    save_run_tokenizer,
)
from t1jax.sampling import Sampler, strategy_for
from t1jax.train.frozen_base import frozen_base
from t1jax.train.guards import check_finite
from t1jax.train.objectives import kl_normalized_rewards, rloo_advantages
from t1jax.train.rl.batch import pack, sequence_kl, token_advantages
from t1jax.train.rl.problems import problem_set
from t1jax.train.rl.rollout import RolloutGroups, grade_and_penalise, grading_metrics
from t1jax.train.rl.selection import drop_zero_variance, keep_m_per_group
from t1jax.train.rl.update import make_anchor_update, make_merge, make_score_fn, make_update_step, update_policy
from t1jax.train.state import frozen_args, layout_from_config


def rl_step(run: RLRun, state, anchor, step: int):
    """One T1 RL step. Returns (state, anchor, metrics)."""
    r, K = run.config.rl, run.config.rl.sampling.num_samples
    start = time.perf_counter()
    kept, first_round, drawn, dropped, graded, waited = [], None, 0, 0, [], 0.0
    weights = run.sampler_weights(state.params)
    for round_ in range(r.max_refill_rounds + 1):
        problems, prompts = run.prompts.next()
        drawn += len(problems)
        samples = run.sample(weights, prompts, run.sampling_key(state.rng, step, round_))
        # the next prompts are encoded while the verifier grades (the loop's next round or step uses them)
        rewards, verdicts, wait_s = grade_and_penalise(
            run.verifier,
            run.grading,
            run.tokenizer,
            problems,
            samples,
            K,
            run.penalties,
            run.prompts.prefetch,
            **run.grading_shares,
        )
        graded.append(verdicts)
        waited += wait_s
        groups = RolloutGroups.from_samples(prompts, samples, rewards, K)
        first_round = groups if first_round is None else first_round
        if r.filter_zero_variance:
            groups, count = drop_zero_variance(groups)
            dropped += count
        kept.append(groups)
        if sum(map(len, kept)) >= r.prompts_per_step:
            break
    del weights  # with LoRA a merged copy of the weights: freed before the update
    groups = RolloutGroups.concatenate(kept).take(np.arange(r.prompts_per_step))
    if r.keep_per_prompt:
        groups = keep_m_per_group(groups, r.keep_per_prompt, np.random.default_rng([run.config.run.seed, step]))
    sampled = time.perf_counter()

    metrics = {"groups_sampled": drawn, "groups_filtered": dropped, **first_round.rates()}
    metrics.update(grading_metrics(graded, waited))
    metrics.update(kl_sequence=0.0, update_rows=0, update_row_fill=0.0)
    if len(groups):  # else no group had signal even after refilling: no update this step
        batch = pack(groups, run.tokenizer.pad_id, r, run.row_multiple)
        batch["ref_logp"] = run.anchor_logprobs(anchor, batch)
        kl = sequence_kl(groups, batch, batch["ref_logp"], r.kl_estimator)
        shaped = kl_normalized_rewards(groups.reward, kl, r.kl_beta)
        batch["advantage"] = token_advantages(batch, rloo_advantages(shaped))
        state, update_metrics = update_policy(run.update_step, state, batch, r)
        last_saved = run.checkpointer.latest_step()
        check_finite("RL", step, update_metrics, last_saved, "a lower rl.learning_rate may help")
        metrics.update(kl_sequence=float(kl.mean()), update_rows=len(batch["tokens"]))
        metrics.update(update_row_fill=float(np.mean(batch["segment_ids"] > 0)))
        metrics.update({k: float(v) for k, v in update_metrics.items()})
    if r.anchor_every and step % r.anchor_every == 0:
        anchor = run.move_anchor(anchor, state.params)
    updated = time.perf_counter()

    metrics.update(groups.summary(), time_sample_grade=sampled - start, time_update=updated - sampled)
    metrics["sampled_tokens_per_s"] = metrics.pop("sampled_tokens") / (sampled - start)
    return state, anchor, metrics


class RLRun:
    """Everything one RL run needs, built once from its config: tokenizer, problems and their
    verifier, prompts, the sampler, the penalties and the jitted update, scoring and anchor
    functions. `close()` stops the grading thread and workers."""

    def __init__(self, config):
        parallel.initialize(config.distributed)
        self.config, r = config, config.rl
        self.workdir = make_workdir(config.run.workdir)
        save_run_config(self.workdir, config)
        self.tokenizer = self._tokenizer()
        self.problems, self.verifier = problem_set(config, self.tokenizer)
        self.grading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="t1jax-grading")
        # several processes grade a share of the samples each, then exchange the verdicts
        self.grading_shares = dict(share=process_share, gather=gather_shares) if several_processes() else {}
        if jax.process_index() == 0 and (r.data_path or sum(self.problems.skipped.values())):
            print(f"t1jax: {self.problems.report()}", file=sys.stderr, flush=True)
        updates = r.num_steps * r.num_passes * r.minibatches
        rl_optim = {
            "optim.learning_rate": r.learning_rate,
            "optim.warmup_steps": r.warmup_steps,
            "optim.trainable": r.trainable,
        }
        self.layout = layout_from_config(with_overrides(config, rl_optim), updates)
        self.sample = Sampler(
            self.layout.model_config,
            strategy_for(r.sampling),
            r.sampling.max_new_tokens,
            r.sampling.num_samples,
            stop_ids(self.tokenizer, config.data.prompt_format),
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
        # Rows of an update split evenly into minibatches, micro-batches and batch shards (an
        # automatic micro-batch count, rl.grad_accum_steps = 0, divides whatever rows come).
        shards = parallel.batch_shards(self.layout.mesh, self.layout.rules)
        self.row_multiple = r.minibatches * max(1, r.grad_accum_steps) * shards
        chunk = config.optim.logits_chunk_tokens
        self.score = make_score_fn(self.layout, chunk)
        self.batch_sharding = parallel.batch_sharding(self.layout.mesh, self.layout.rules)
        update_step = make_update_step(self.layout, r, r.grad_accum_steps, chunk)
        self.update_step = lambda state, batch: update_step(state, *self.frozen, on_mesh(batch, self.batch_sharding))
        self.move_anchor = make_anchor_update(self.layout, r.anchor_mu)
        # LoRA: the frozen base weights (set by initial_state), shared by the policy and the anchor
        self.frozen: tuple = ()
        self._merge = make_merge(self.layout) if self.layout.lora else None
        # Every process draws the whole global batch of prompts, so the host's work (grading,
        # selection, packing, metrics) is the same on all of them and equals a one-process run;
        # the jitted pieces split the rows over the processes' devices.
        stream = prompt_stream(self.problems.problems, r.prompts_per_step, config.run.seed)
        fmt = config.data.prompt_format
        self.prompts = PromptFeed(stream, lambda p: format_prompt(self.tokenizer, p["prompt"], fmt))
        self.checkpointer = Checkpointer(
            str(self.workdir / "checkpoints"), config.checkpoint.max_to_keep, config.checkpoint.async_save
        )

    def _tokenizer(self):
        """The tokenizer of rl.init_from (or sft.tokenizer_path), kept in the workdir on the first start."""
        init_from, saved = self.config.rl.init_from, has_tokenizer(self.workdir)
        if init_from:
            check_run_dir(init_from, "rl.init_from")
        elif not (self.config.sft.tokenizer_path or saved):
            raise ConfigError("RL needs a tokenizer: set rl.init_from to an SFT run's workdir or sft.tokenizer_path")
        tokenizer = run_tokenizer(init_from or self.workdir, self.config.sft.tokenizer_path)
        if not saved:
            save_run_tokenizer(tokenizer, self.workdir)
        return tokenizer

    def initial_state(self):
        """(state, anchor, data_state): the RL checkpoint if there is one, else the weights of
        rl.init_from (fresh ones without it), with the anchor at the policy. With LoRA the state
        and the anchor hold adapters (fresh ones: the base model) and rl.init_from gives the
        frozen base."""
        abstract = {"policy": self.layout.abstract_state(), "anchor": self.layout.abstract_trained()}
        restored = self.checkpointer.restore(abstract, set_aside_unusable=True)
        init_from = self.config.rl.init_from
        base = frozen_base(self.layout, self.workdir, self.config, init_from, "rl.init_from", restored is not None)
        self.frozen = frozen_args(base)
        if restored is not None:
            saved, data_state = restored
            return saved["policy"], saved["anchor"], data_state
        state = self.layout.init(self.config.run.seed)
        if init_from and base is None:
            _, params, _ = load_run(
                self.config.rl.init_from, config=self.config, layout=self.layout, key="rl.init_from"
            )
            state = state.replace(params=params)
        anchor = jax.tree.map(lambda x: x.copy(), state.params)
        return state, anchor, None

    def close(self) -> None:
        self.grading.shutdown()
        self.verifier.close()

    @staticmethod
    def sampling_key(rng, step: int, round_: int):
        return jax.random.fold_in(jax.random.fold_in(rng, step), round_)

    def anchor_logprobs(self, anchor, batch: dict) -> np.ndarray:
        """log pi_anchor of every token of the batch, [rows, row_len]."""
        arrays = on_mesh([batch[k] for k in ("tokens", "positions", "segment_ids")], self.batch_sharding)
        return fetch(self.score(anchor, *self.frozen, *arrays))

    def sampler_weights(self, trained):
        """The weights the sampler runs with: the policy's params, or with LoRA the base with the
        policy's adapters merged in (in the compute dtype, as the update runs them)."""
        return trained if self._merge is None else self._merge(trained, *self.frozen)


def run_rl(config) -> dict:
    """Runs (or resumes) T1 RL for config.rl.num_steps steps; returns the last metrics."""
    run = RLRun(config)
    r = config.rl
    state, anchor, data_state = run.initial_state()
    if data_state:
        run.prompts.set_state(data_state["prompts"])
    # The RL step is saved with the prompts: a step whose groups all lacked signal made no
    # update, so the optimizer's count can fall behind it (older checkpoints: that count).
    start = (data_state or {}).get("step", int(state.step) // (r.num_passes * r.minibatches))
    is_primary = jax.process_index() == 0
    writer = MetricsWriter(
        str(run.workdir),
        config.run.tensorboard,
        is_primary,
        wandb_project=config.run.wandb_project,
        wandb_run_name=str(run.workdir),
        config=config,
        resume_step=start,
    )
    progress = Progress(r.num_steps, "rl", enabled=config.run.progress and is_primary, start=start)
    metrics: dict = {}

    def save(step):
        data = {"prompts": run.prompts.get_state(), "step": step}
        run.checkpointer.save(step, {"policy": state, "anchor": anchor}, data)

    with StopOnSignal() as stop:
        try:
            for step in range(start + 1, r.num_steps + 1):
                state, anchor, metrics = rl_step(run, state, anchor, step)
                writer.write(
                    step, metrics
                )  # before the checkpoint: a kill between the two must not lose this step's line
                saved = step % config.checkpoint.save_every == 0 or step == r.num_steps
                if saved:
                    save(step)
                progress.update(step, acc=metrics["accuracy"], reward=metrics["reward"])
                if stop.requested(step):
                    if not saved:
                        save(step)
                    run.checkpointer.wait()
                    raise stop.stopped(step)
            run.checkpointer.wait()
        finally:
            progress.close()
            writer.close()
            run.checkpointer.close()
            run.close()
    summary = {"workdir": str(run.workdir), "final_step": r.num_steps, "start_step": start}
    return {**summary, **run.problems.counts(), **metrics}
