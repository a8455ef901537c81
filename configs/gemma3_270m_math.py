"""T1 on Gemma 3 270M and GSM8K: synthesize -> SFT -> RL -> eval, sized to finish on two CPU cores
(docs/results/2026-12-06-gemma3-270m-math.md has the commands, times and figures):

    t1jax import gemma3-270m --out runs/gemma3-270m
    t1jax synthesize --config configs/gemma3_270m_math.py --run runs/gemma3-270m \\
        --data train.jsonl --out traces.jsonl --num_attempts 4 --reference reference
    t1jax sft --config configs/gemma3_270m_math.py --config.sft.data_path=traces.jsonl
    t1jax rl --config configs/gemma3_270m_math.py --config.run.workdir=runs/gemma3-270m-rl \\
        --config.rl.data_path=train.jsonl
    t1jax eval --config configs/gemma3_270m_math.py --run runs/gemma3-270m-rl --config.eval.suite=gsm8k

The shipped benchmarks are test sets: train on rows that evaluation does not use (eval reads the
first eval.num_problems rows, so train on later ones). On an accelerator, raise the sizes marked
"CPU size".
"""

from t1jax.config import base_config


def get_config():
    c = base_config()
    # The imported model's shape (runs/gemma3-270m/config.json): SFT and RL build their state from
    # this section and load the imported weights into it, so it must match them exactly.
    m = c.model
    m.vocab_size, m.d_model, m.num_layers, m.mlp_dim = 262144, 640, 18, 2048
    m.num_heads, m.num_kv_heads, m.head_dim, m.query_scale = 4, 1, 256, 256**-0.5
    m.mlp_activation, m.rope_base, m.rope_local_base = "gelu", 1e6, 1e4
    m.qk_norm, m.post_norms, m.scale_embeddings, m.norm_plus_one = True, True, True, True
    m.sliding_window, m.global_every, m.tie_embeddings, m.norm_eps = 512, 6, True, 1e-6
    # A pretrained base model without a chat template: the problem and the \boxed{} instruction as
    # plain text after <bos>, the response after it, <eos> at its end ("chat" needs a template).
    c.data.prompt_format = "plain"
    c.run.workdir = "runs/gemma3-270m-sft"
    c.run.log_every = 1  # every step is minutes on a CPU: log each
    c.run.tensorboard = False
    c.sampling.max_prompt_len = 256  # GSM8K and most MATH500 prompts with this tokenizer
    # synthesize's attempts: a base model's sample at temperature 1 drifts into web text; 0.8
    # keeps attempts on the problem while still varied. 128 tokens hold most GSM8K solutions
    # (a cut attempt is never used in a trace). CPU size.
    c.sampling.temperature, c.sampling.max_new_tokens = 0.8, 128

    # SFT: a full fine-tune of a pretrained model, so a small learning rate; traces of two wrong
    # attempts, their checks and a right one reach ~450 tokens. CPU size: 8 steps of 4 rows
    # (half a pass over ~60 traces).
    s = c.sft
    s.init_from = "runs/gemma3-270m"
    s.seq_len, s.batch_size, s.num_steps = 512, 4, 8
    s.eval_fraction, s.eval_every = 0.1, 8  # a few held-out traces, scored once at the end
    c.optim.learning_rate, c.optim.warmup_steps = 1e-5, 2
    c.checkpoint.save_every, c.checkpoint.max_to_keep = 1000, 1  # the final step only (3 GB each)

    # RL on a math JSONL in GSM8K's layout: the answer after "####" of the worked solution.
    r = c.rl
    r.init_from = "runs/gemma3-270m-sft"
    r.problem_field, r.answer_field, r.answer_format = "problem", "solution", "gsm8k"
    r.grade_workers = 2  # the machine's cores; grading overlaps the next prompts' encoding
    # CPU size: 3 steps of 2 prompts x K=4 samples of 128 tokens (the paper: K=64, far more steps).
    r.num_steps, r.prompts_per_step = 3, 2
    r.sampling.num_samples, r.sampling.max_new_tokens = 4, 128
    r.learning_rate, r.warmup_steps = 1e-6, 0  # a pretrained policy: small steps
    # At this size nearly every group is all wrong; zero-variance filtering would drop them all and
    # no update would run. Off, groups still differ by the penalties (cut or repetitive samples),
    # which is what a few CPU steps can learn from. On an accelerator with K >= 16: True, 2 refills.
    r.filter_zero_variance, r.max_refill_rounds = False, 0
    r.anchor_every = 0  # the SFT model stays the anchor over so few steps
    # The 262k vocabulary: logits of at most this many tokens exist at once (0.5 GiB float32).
    c.optim.logits_chunk_tokens = 512

    # Evaluation: CPU size, 20 problems x 4 samples; the scaling curve up to the sample length.
    ev = c.eval
    ev.num_problems = 20
    ev.sampling.num_samples, ev.sampling.max_new_tokens = 4, 128
    ev.budgets = "16,32,64,128"
    ev.batch_prompts = 20
    return c
