"""Every key with its default (see t1jax/config/ for what each one means)."""

from t1jax.config import base_config


def get_config():
    return base_config()
