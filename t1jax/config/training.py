"""What training reads: the `optim`, `sft` and `rl` sections and the top-level `task_knobs`, each
with the check of its values."""

from __future__ import annotations

import ml_collections

from t1jax.config.inference import check_samples, samples
from t1jax.config.require import require, require_regex


def optim_section() -> ml_collections.ConfigDict:
    # Optimiser and schedule (shared by SFT and RL).
    o = ml_collections.ConfigDict()
    o.learning_rate = 1e-3
    o.warmup_steps = 20
    o.final_lr_fraction = 0.1  # cosine decays to learning_rate * this
    o.weight_decay = 0.01
    o.b1 = 0.9
    o.b2 = 0.95
    o.eps = 1e-8
    o.grad_clip_norm = 1.0
    o.trainable = ""  # regex over parameter names (e.g. "blocks.3."): only those train; "": all
    # Tokens per device whose logits (and their gradient) exist at once in the SFT loss and the RL
    # update and anchor scoring: float32, this x vocab x 4 bytes (1 GiB at Gemma's 262k vocab);
    # the sequence is cut into chunks of positions to fit it. 0: the whole batch at once.
    o.logits_chunk_tokens = 1024
    # Storage dtype of AdamW's two moments: "float32", or "bfloat16" to halve their memory (each
    # moment then keeps ~3 significant digits; the optimizer's arithmetic is float32 either way).
    # Parameters are stored in model.param_dtype only (no float32 master copy); see t1jax/config/model.py.
    o.moments_dtype = "float32"
    return o


def check_optim(config) -> None:
    o = config.optim
    require(o.learning_rate > 0, f"optim.learning_rate must be positive, got {o.learning_rate}")
    require(0 <= o.final_lr_fraction <= 1, f"optim.final_lr_fraction must be in [0, 1], got {o.final_lr_fraction}")
    require(o.warmup_steps >= 0 and o.grad_clip_norm >= 0, "optim.warmup_steps and optim.grad_clip_norm must be >= 0")
    require_regex("optim.trainable", o.trainable)
    require(o.logits_chunk_tokens >= 0, f"optim.logits_chunk_tokens must be >= 0, got {o.logits_chunk_tokens}")
    require(
        o.moments_dtype in ("float32", "bfloat16"),
        f"optim.moments_dtype must be 'float32' or 'bfloat16', got {o.moments_dtype!r}",
    )


# The prompt formats of t1jax.data.chat.PROMPT_FORMATS (a test keeps the two lists equal).
PROMPT_FORMATS = ("plain", "chat", "qwen_math_cot")


def data_section() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    # How a problem becomes a prompt, in SFT, RL and evaluation: "plain" (t1jax's own template),
    # "chat" (the tokenizer's chat template, the problem as the user's message) or "qwen_math_cot"
    # (the chat template with Qwen2.5-Math's "Please reason step by step, and put your final
    # answer within \boxed{}." as the system message)
    d.prompt_format = "plain"
    return d


def check_data(config) -> None:
    fmt = config.data.prompt_format
    require(fmt in PROMPT_FORMATS, f"data.prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {fmt!r}")


def sft_section() -> ml_collections.ConfigDict:
    # Supervised fine-tuning.
    s = ml_collections.ConfigDict()
    s.data_path = ""  # JSONL of {prompt, response}; "" = synthesized data of the built-in task
    s.task = "countdown"  # built-in task ("countdown", "graph_path", "linear_equation") when data_path is ""
    # What the built-in task supplies: "traces" (trial-and-error chains of thought) or "drills"
    # (the arithmetic of its checks alone, t1jax/data/drills.py: a stage before the traces; a
    # fresh document for every row trained on, num_steps x batch_size of them).
    s.source = "traces"
    s.init_from = ""  # workdir of an earlier SFT run (e.g. on drills) whose weights and tokenizer start this one
    s.strict_data = False  # a bad JSONL line: False = skip, count and report it; True = stop
    s.prompt_field = "prompt"
    s.response_field = "response"
    s.tokenizer_path = ""  # a sentencepiece .model, a tokenizer.json or a folder with either; "" = train one
    s.seq_len = 192  # fits the built-in traces (countdown p95: 154 tokens with the demo tokenizer)
    s.batch_size = 32  # rows per step
    # Pack several whole examples into each row (each attends only to itself): the same examples
    # in fewer rows. A row then holds ~1.5 of the demo's traces (mean 83 of 145 tokens), 88% full.
    s.pack = False
    # Micro-batches per step, their gradients summed (batch_size must divide evenly); 0: automatic,
    # on a CPU micro-batches of at most 2k tokens per device (cache-sized), elsewhere the whole batch.
    s.grad_accum_steps = 0
    s.num_steps = 200
    s.eval_fraction = 0.05  # held out for the validation loss (built-in task: its validation split)
    s.eval_every = 50
    s.num_builtin_examples = 4000  # synthesized training traces of the built-in task
    # Wrong attempts before the right one in a synthesized trace: one more with probability
    # sft.retry_prob, at most sft.max_failed (defaults: half the traces start with the right attempt).
    s.max_failed = 2
    s.retry_prob = 0.5
    s.patience = 0  # stop after this many evaluations without a better validation loss; 0: run num_steps
    s.min_improvement = 0.01  # a validation loss counts as better when it is this fraction below the best
    return s


def check_sft(config) -> None:
    s = config.sft
    require(s.seq_len > 1 and s.num_steps > 0, "sft.seq_len must be > 1 and sft.num_steps > 0")
    require(s.batch_size > 0, f"sft.batch_size must be positive, got {s.batch_size}")
    require(s.num_builtin_examples > 0, f"sft.num_builtin_examples must be positive, got {s.num_builtin_examples}")
    require(s.grad_accum_steps >= 0, f"sft.grad_accum_steps must be >= 0 (0: automatic), got {s.grad_accum_steps}")
    require(
        s.grad_accum_steps == 0 or s.batch_size % s.grad_accum_steps == 0,
        f"sft.batch_size ({s.batch_size}) must be divisible by sft.grad_accum_steps ({s.grad_accum_steps})",
    )
    require(0 <= s.eval_fraction < 1, f"sft.eval_fraction must be in [0, 1), got {s.eval_fraction}")
    require(s.max_failed >= 0, f"sft.max_failed must be >= 0, got {s.max_failed}")
    require(0 <= s.retry_prob < 1, f"sft.retry_prob must be in [0, 1), got {s.retry_prob}")
    require(s.source in ("traces", "drills"), f"sft.source must be 'traces' or 'drills', got {s.source!r}")
    require(s.patience >= 0 and s.min_improvement >= 0, "sft.patience and sft.min_improvement must be >= 0")


def task_knobs_default() -> str:
    # Difficulty knobs of the built-in task (sft.task, rl.task and the evaluation all use them), as
    # "name=value,..." e.g. "max_solution=9,max_constant=20"; "" = the task's defaults.
    # The task names and knobs are checked by t1jax.data.tasks.check_tasks(config): the config
    # package imports no task.
    return ""


def rl_section() -> ml_collections.ConfigDict:
    # T1 reinforcement learning (docs/recipe.md, section 2).
    rl = ml_collections.ConfigDict()
    rl.init_from = ""  # workdir of the SFT run to start from ("" = fresh weights)
    rl.task = "countdown"  # built-in task whose train split supplies the prompts (when rl.data_path is "")
    rl.num_steps = 100
    rl.num_prompts = 2000  # size of the prompt pool drawn from the task's train split
    # Math RL: a JSONL of problems and final answers ("" = the built-in task rl.task). Every usable
    # row is a prompt (rows without an answer, with one the grader cannot read or too long for
    # sampling.max_prompt_len are counted and skipped); responses are graded by the symbolic grader
    # (t1jax/rewards) on their \boxed{} answer, in worker processes with a per-response timeout.
    rl.data_path = ""
    rl.problem_field = "problem"
    rl.answer_field = "answer"
    rl.answer_format = "plain"  # "plain": the field is the answer; "gsm8k": the text after its last "####"
    rl.grade_timeout_s = 5.0  # per response; one that runs longer is wrong (metric grade_timeouts)
    rl.grade_workers = 0  # grading processes; 0: min(CPUs, 8)
    rl.prompts_per_step = 8  # P
    # K samples per prompt (oversampling; the paper uses 64) at a temperature (paper: 1.2 for 32B models)
    rl.sampling = samples(temperature=1.0, num_samples=8, max_new_tokens=128)
    rl.learning_rate = 1e-4
    rl.warmup_steps = 5
    rl.trainable = ""  # regex over parameter names: RL updates only those (optim.trainable for RL); "": all
    rl.grad_accum_steps = 0  # micro-batches per update; 0: automatic, as sft.grad_accum_steps
    rl.num_passes = 1  # optimizer passes over each batch (> 1: PPO-style clipping matters)
    rl.minibatches = 1  # optimizer updates per pass
    rl.clip_low = 0.2
    rl.clip_high = 0.28
    rl.aggregation = "token_mean"  # or "seq_mean"
    # Pack several [prompt | response] sequences into each row of the update (same loss, fewer
    # padding tokens). Packed rows are pack_factor times the longest possible sequence (bucketed
    # prompt + max_new_tokens); longer rows pack tighter but attend over more positions
    # (benchmarks/rl_packing.py: 1 is the fastest at the demo's shapes, 1.78x unpacked).
    rl.pack = True
    rl.pack_factor = 1
    rl.entropy_coef = 1e-3  # alpha: loss -= alpha * mean token entropy
    rl.kl_beta = 2e-4  # beta of the on-policy KL normalisation of rewards
    rl.kl_estimator = "k1"  # "k1" or "k3" for the per-sample KL d_i
    rl.kl_loss_coef = 0.0  # optional k3 KL term in the loss (0: KL only via rewards)
    rl.anchor_every = 10  # move the anchor every N steps; 0: frozen anchor (the SFT model)
    rl.anchor_mu = 0.0  # anchor <- mu * anchor + (1 - mu) * policy; 0: reset to the policy
    rl.filter_zero_variance = True  # drop groups whose raw correctness is all equal (DAPO)
    rl.max_refill_rounds = 2  # extra sampling rounds to refill dropped groups
    rl.keep_per_prompt = 0  # M of K per prompt, balancing right and wrong; 0: keep all
    rl.penalties = True  # truncated / repetitive / garbage samples get rl.penalty
    rl.penalty = -1.0
    rl.repeat_ngram = 8  # a token n-gram ...
    rl.repeat_max = 4  # ... occurring more often than this marks a sample repetitive
    rl.garbage_fraction = 0.3  # share of byte-fallback/unknown tokens that marks garbage
    return rl


def check_rl(config) -> None:
    r = config.rl
    K = r.sampling.num_samples
    check_samples("rl.sampling", r.sampling)
    require(r.learning_rate > 0, f"rl.learning_rate must be positive, got {r.learning_rate}")
    require(r.warmup_steps >= 0, f"rl.warmup_steps must be >= 0, got {r.warmup_steps}")
    require(K >= 2, f"rl.sampling.num_samples (K) must be >= 2 for the leave-one-out baseline, got {K}")
    require(r.sampling.temperature > 0, "rl.sampling.temperature must be > 0: RL learns from sampled responses")
    require(
        r.keep_per_prompt == 0 or 2 <= r.keep_per_prompt <= K,
        f"rl.keep_per_prompt must be 0 (all) or in 2..{K}, got {r.keep_per_prompt}",
    )
    require(
        r.prompts_per_step > 0 and r.minibatches > 0 and r.prompts_per_step % r.minibatches == 0,
        f"rl.prompts_per_step ({r.prompts_per_step}) must be divisible by rl.minibatches ({r.minibatches})",
    )
    require(r.kl_estimator in ("k1", "k3"), f"rl.kl_estimator must be 'k1' or 'k3', got {r.kl_estimator!r}")
    require(
        r.aggregation in ("token_mean", "seq_mean"),
        f"rl.aggregation must be 'token_mean' or 'seq_mean', got {r.aggregation!r}",
    )
    require(0 <= r.anchor_mu <= 1, f"rl.anchor_mu must be in [0, 1], got {r.anchor_mu}")
    for key in ("num_steps", "num_prompts", "num_passes", "pack_factor"):
        require(r[key] >= 1, f"rl.{key} must be >= 1, got {r[key]}")
    require(r.grad_accum_steps >= 0, f"rl.grad_accum_steps must be >= 0 (0: automatic), got {r.grad_accum_steps}")
    require(r.anchor_every >= 0 and r.max_refill_rounds >= 0, "rl.anchor_every and rl.max_refill_rounds must be >= 0")
    require_regex("rl.trainable", r.trainable)
    require(
        r.answer_format in ("plain", "gsm8k"), f"rl.answer_format must be 'plain' or 'gsm8k', got {r.answer_format!r}"
    )
    require(r.problem_field and r.answer_field, "rl.problem_field and rl.answer_field must name JSONL fields")
    require(r.grade_timeout_s > 0, f"rl.grade_timeout_s must be positive, got {r.grade_timeout_s}")
    require(r.grade_workers >= 0, f"rl.grade_workers must be >= 0 (0: automatic), got {r.grade_workers}")
