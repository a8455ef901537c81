"""Every config key t1jax knows, with its default. configs/*.py start from `base_config()`.

Keys are grouped by the part of the stack that reads them. A key that nothing reads is a bug
(tests/test_config.py checks it), so add keys only together with the code that uses them.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    # Decoder-only transformer. The default is the small built-in demo model.
    c.model = m = ml_collections.ConfigDict()
    m.vocab_size = 512
    m.d_model = 256
    m.num_layers = 4
    m.num_heads = 8
    m.num_kv_heads = 4  # grouped-query attention; == num_heads is plain multi-head
    m.head_dim = 0  # 0: d_model // num_heads
    m.mlp_dim = 768
    m.mlp_activation = "silu"  # gated MLP: "silu" (SwiGLU, Llama/Qwen) or "gelu" (GeGLU, Gemma)
    m.rope_base = 10000.0
    m.qk_norm = False  # RMSNorm on queries and keys per head (Gemma-3, Qwen3)
    m.qkv_bias = False  # bias on q/k/v projections (Qwen2.5)
    m.post_norms = False  # extra RMSNorm after attention and MLP outputs (Gemma-2/3)
    m.scale_embeddings = False  # multiply embeddings by sqrt(d_model) (Gemma)
    m.sliding_window = 0  # 0: every layer attends globally
    m.global_every = 0  # with a window: every n-th layer is global (Gemma-3: 6); 0: none
    m.tie_embeddings = True
    m.norm_eps = 1e-6
    m.param_dtype = "float32"
    m.compute_dtype = "float32"  # "bfloat16" on TPU; float32 is as fast on CPU

    # Device mesh: sizes of the named axes; one may be -1 (all remaining devices).
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    # Logical axis -> comma-separated mesh axes ("" = replicated). The one sharding table.
    c.mesh.rules = r = ml_collections.ConfigDict()
    r.batch = "data,fsdp"
    r.length = ""
    r.embed = "fsdp"
    r.vocab = "tensor"
    r.heads = "tensor"
    r.kv_heads = "tensor"
    r.head_dim = ""
    r.mlp = "tensor"
    r.norm = ""

    # Multi-process start-up. "auto": initialise when launched by a cluster (TPU pod, SLURM)
    # or when num_processes > 1; "off": never.
    c.distributed = ml_collections.ConfigDict()
    c.distributed.mode = "auto"
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 0  # 0: let JAX detect
    c.distributed.process_id = -1  # -1: let JAX detect

    # Optimiser and schedule (shared by SFT and RL).
    c.optim = o = ml_collections.ConfigDict()
    o.learning_rate = 1e-3
    o.warmup_steps = 20
    o.final_lr_fraction = 0.1  # cosine decays to learning_rate * this
    o.weight_decay = 0.01
    o.b1 = 0.9
    o.b2 = 0.95
    o.eps = 1e-8
    o.grad_clip_norm = 1.0
    o.trainable = ""  # regex over parameter names (e.g. "blocks.3."): only those train; "": all

    # Supervised fine-tuning.
    c.sft = s = ml_collections.ConfigDict()
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
    s.tokenizer_path = ""  # sentencepiece .model; "" = train one on the data
    s.seq_len = 192  # fits the built-in traces (countdown p95: 154 tokens with the demo tokenizer)
    s.batch_size = 32  # rows per step
    # Pack several whole examples into each row (each attends only to itself): the same examples
    # in fewer rows. A row then holds ~1.5 of the demo's traces (mean 83 of 145 tokens), 88% full.
    s.pack = False
    s.grad_accum_steps = 1  # micro-batches per step (batch_size must divide evenly)
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

    # Difficulty knobs of the built-in task (sft.task, rl.task and the evaluation all use them), as
    # "name=value,..." e.g. "max_solution=9,max_constant=20"; "" = the task's defaults.
    c.task_knobs = ""

    # Sampling (the `sample` command; RL rollouts use it too).
    c.sampling = sp = ml_collections.ConfigDict()
    sp.temperature = 1.0  # 0: greedy
    sp.top_k = 0  # 0: off
    sp.top_p = 1.0  # 1.0: off
    sp.min_p = 0.0  # 0.0: off
    sp.num_samples = 4  # K samples per prompt
    sp.max_new_tokens = 96
    sp.max_prompt_len = 256
    sp.stage_tokens = 0  # decode stage length: each attends over the cache filled so far (0: auto)
    sp.seed = 0

    # T1 reinforcement learning (T1_RECIPE.md section 2).
    c.rl = rl = ml_collections.ConfigDict()
    rl.init_from = ""  # workdir of the SFT run to start from ("" = fresh weights)
    rl.task = "countdown"  # built-in task whose train split supplies the prompts
    rl.num_steps = 100
    rl.num_prompts = 2000  # size of the prompt pool drawn from the task's train split
    rl.prompts_per_step = 8  # P
    rl.samples_per_prompt = 8  # K (oversampling); the paper uses 64
    rl.temperature = 1.0  # sampling temperature (paper: 1.2 for 32B models)
    rl.top_p = 1.0
    rl.max_new_tokens = 128
    rl.learning_rate = 1e-4
    rl.warmup_steps = 5
    rl.trainable = ""  # regex over parameter names: RL updates only those (optim.trainable for RL); "": all
    rl.grad_accum_steps = 1
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

    # Evaluation: `t1jax eval`, and the demo's evaluation of its SFT and RL models.
    c.eval = ev = ml_collections.ConfigDict()
    ev.suite = ""  # "": the built-in task (rl.task) split below; or math500 / gsm8k / aime24 / a JSONL path
    ev.split = "test"
    ev.num_problems = 200  # problems of a built-in task; for a benchmark 0 = all rows, n = the first n
    ev.num_samples = 8  # n samples per problem: pass@1 is their mean; maj@k and pass@k for k <= n
    ev.temperature = 1.0  # 0: greedy (then num_samples must be 1)
    ev.top_p = 1.0
    ev.max_new_tokens = 160
    ev.budgets = "4,8,16,32,64,128"  # inference-scaling reasoning budgets in tokens; "": no curve
    ev.scaling_temperature = 0.0  # how the reasoning traces are drawn (0: greedy)
    ev.scaling_traces = 1  # reasoning traces per problem for the scaling curve (> 1 needs a temperature)
    ev.answer_tokens = 32  # greedy tokens decoded after the answer-forcing suffix
    ev.batch_prompts = 64  # prompts per sampler call (bounds the KV cache)

    # The end-to-end demo (`t1jax demo`): SFT -> RL -> evaluation -> report in run.workdir.
    c.demo = dm = ml_collections.ConfigDict()
    dm.sft_dir = ""  # a finished SFT run to start RL from ("": train one in <workdir>/sft)
    dm.drill_steps = 0  # SFT steps on check drills before SFT on traces (0: no drill stage)
    # The drills' learning rate (optim.learning_rate is the traces'): arithmetic is learnt from
    # scratch at a rate at which the traces that follow would overwrite it.
    dm.drill_learning_rate = 3e-3
    dm.drill_batch_size = 32  # drills per step (sft.batch_size is the traces': rows, maybe packed)
    dm.rl_checkpoints = 3  # evenly spaced RL checkpoints whose inference-scaling curves are drawn

    # Run bookkeeping.
    c.run = ml_collections.ConfigDict()
    c.run.workdir = "runs/default"
    c.run.seed = 0
    c.run.log_every = 10
    c.run.progress = True
    c.run.tensorboard = True

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.save_every = 100
    c.checkpoint.max_to_keep = 3
    c.checkpoint.async_save = True
    return c
