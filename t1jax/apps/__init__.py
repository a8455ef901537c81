"""What a user runs: the `t1jax` command line, `t1jax sample` and the demo. The only layer that
imports training and evaluation together."""
