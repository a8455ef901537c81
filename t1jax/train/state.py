"""Train state (params, optimizer state, step, RNG) created sharded on a mesh.

With LoRA (model.lora_rank > 0) the state's `params` are the adapters (t1jax.model.lora): only
they are differentiated and have optimizer moments. The base weights they adapt are frozen and
held outside the state, once: the jitted steps take them as an argument of their own, never
donated, and the model runs with the two merged (`model_params`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.errors import ConfigError
from t1jax.model import lora
from t1jax.runtime.layout import ParamsLayout, make_params_layout
from t1jax.train.optimizer import make_optimizer, trainable_labels


@struct.dataclass
class TrainState:
    params: dict  # what is trained: the model's params, or with LoRA the adapters
    opt_state: optax.OptState
    step: jax.Array
    rng: jax.Array  # raw uint32[2] key, so Orbax saves it as an ordinary array


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Everything needed to build, shard and restore a TrainState on one mesh: the parameters'
    layout plus the optimizer and the shardings of its state.

    params_layout is that of the model's parameters (with LoRA: the frozen base, a model without
    LoRA); model_config is the run's model (with LoRA: its adapters' settings too)."""

    params_layout: ParamsLayout
    tx: optax.GradientTransformation
    shardings: TrainState
    model_config: model_lib.ModelConfig

    @property
    def lora(self) -> bool:
        return lora.enabled(self.model_config)

    @property
    def mesh(self) -> Mesh:
        return self.params_layout.mesh

    @property
    def rules(self) -> dict:
        return self.params_layout.rules

    @property
    def param_shardings(self) -> dict:
        """The model's parameters' shardings (with LoRA: the base's and the merged params')."""
        return self.params_layout.param_shardings

    @property
    def trained_shardings(self) -> dict:
        """The shardings of what is trained (state.params; the RL anchor)."""
        return self.shardings.params

    def abstract_params(self) -> dict:
        return self.params_layout.abstract_params()

    def abstract_trained(self) -> dict:
        """ShapeDtypeStructs of what is trained (the params, or the adapters) with their shardings."""
        shapes = jax.eval_shape(lambda: _fresh_trained(self.model_config, 0))
        return jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.trained_shardings
        )

    def abstract_state(self) -> TrainState:
        """ShapeDtypeStructs carrying this mesh's shardings: the target of a restore."""
        shapes = jax.eval_shape(lambda: _fresh_state(self.model_config, self.tx, 0))
        return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.shardings)

    def init(self, seed: int) -> TrainState:
        """A fresh state, created directly in its shards (no full copy on one device)."""
        make = jax.jit(_fresh_state, static_argnums=(0, 1, 2), out_shardings=self.shardings)
        return make(self.model_config, self.tx, seed)

    def init_params(self, seed: int) -> dict:
        """Fresh model parameters (LoRA: the base of a run that starts from no other run's)."""
        make = jax.jit(model_lib.init_params, static_argnums=(0, 1), out_shardings=self.param_shardings)
        return make(self.params_layout.model_config, seed)


def _fresh_trained(model_config, seed) -> dict:
    if lora.enabled(model_config):
        return lora.init_adapters(model_config, seed)
    return model_lib.init_params(model_config, seed)


def _fresh_state(model_config, tx, seed) -> TrainState:
    params = _fresh_trained(model_config, seed)
    return TrainState(
        params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(seed + 1)
    )


def model_params(layout: StateLayout, trained: dict, base: dict | None) -> dict:
    """The params the model runs with: `trained` itself, or with LoRA the frozen `base` with the
    adapters `trained` merged in, in the compute dtype (what the model casts every weight to on
    use: the same logits, and half the memory of a float32 copy under bfloat16 compute)."""
    if not layout.lora:
        return trained
    return lora.merge(layout.model_config, base, trained, layout.model_config.activations_dtype)


def jit_with_base(layout: StateLayout, fn, first_sharding, rest_shardings: tuple, out_shardings, donate_first: bool):
    """jax.jit of fn(first, base, *rest): with LoRA a function of all three, the frozen base an
    argument of its own placed like the params and never donated; without LoRA a function of
    (first, *rest) with base None."""
    donate = (0,) if donate_first else ()
    if layout.lora:
        in_shardings = (first_sharding, layout.param_shardings, *rest_shardings)
        return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=donate)
    return jax.jit(
        lambda first, *rest: fn(first, None, *rest),
        in_shardings=(first_sharding, *rest_shardings),
        out_shardings=out_shardings,
        donate_argnums=donate,
    )


def frozen_args(base: dict | None) -> tuple:
    """The base as the jitted steps of jit_with_base take it: (base,) with LoRA, () without."""
    return () if base is None else (base,)


def optimizer_from_config(config, model_config, total_steps: int) -> optax.GradientTransformation:
    """The config's optimizer over what is trained (optim.trainable: a subset of the params; with
    LoRA every adapter, and optim.trainable must be empty)."""
    pattern = config.optim.trainable
    if pattern and lora.enabled(model_config):
        raise ConfigError(
            f"optim.trainable (rl.trainable in RL) '{pattern}' and model.lora_rank {model_config.lora_rank} "
            "exclude each other: LoRA trains its adapters only (choose them with model.lora_targets)"
        )
    labels = trainable_labels(model_lib.abstract_params(model_config), pattern) if pattern else None
    return make_optimizer(config.optim, total_steps, labels)


def layout_from_config(config, total_steps: int, devices=None) -> StateLayout:
    """The mesh, sharding rules, optimizer and model of a t1jax config, as one layout."""
    mesh = parallel.make_mesh(config.mesh, devices)
    model_config = model_lib.ModelConfig.from_config(config.model)
    tx = optimizer_from_config(config, model_config, total_steps)
    return make_layout(model_config, tx, mesh, parallel.rules_table(config.mesh.rules))


def make_layout(model_config, tx, mesh: Mesh, rules: dict) -> StateLayout:
    params_layout = make_params_layout(lora.base_model(model_config), mesh, rules)
    if lora.enabled(model_config):
        trained = lora.abstract_adapters(model_config)
        trained_shardings = parallel.tree_shardings(trained, lora.adapter_logical_axes(model_config), rules, mesh)
    else:
        trained, trained_shardings = model_lib.abstract_params(model_config), params_layout.param_shardings
    rep = parallel.replicated(mesh)
    shardings = TrainState(
        params=trained_shardings,
        opt_state=parallel.optimizer_shardings(tx, trained, trained_shardings, mesh),
        step=rep,
        rng=rep,
    )
    return StateLayout(params_layout, tx, shardings, model_config)
