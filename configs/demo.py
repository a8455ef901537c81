"""The end-to-end demo (`t1jax demo` runs it when no --config is given)."""

from t1jax.apps.demo.config import demo_config


def get_config():
    return demo_config()
