"""Every key with its default (see t1jax/defaults.py for what each one means)."""

from t1jax.defaults import base_config


def get_config():
    return base_config()
