"""Train state (params, optimizer state, step, RNG) created sharded on a mesh."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.runtime.layout import ParamsLayout, make_params_layout
from t1jax.train.optimizer import make_optimizer, trainable_labels


@struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    step: jax.Array
    rng: jax.Array  # raw uint32[2] key, so Orbax saves it as an ordinary array


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Everything needed to build, shard and restore a TrainState on one mesh: the parameters'
    layout plus the optimizer and the shardings of its state."""

    params_layout: ParamsLayout
    tx: optax.GradientTransformation
    shardings: TrainState

    @property
    def model_config(self) -> model_lib.ModelConfig:
        return self.params_layout.model_config

    @property
    def mesh(self) -> Mesh:
        return self.params_layout.mesh

    @property
    def rules(self) -> dict:
        return self.params_layout.rules

    @property
    def param_shardings(self) -> dict:
        return self.params_layout.param_shardings

    def abstract_params(self) -> dict:
        return self.params_layout.abstract_params()

    def abstract_state(self) -> TrainState:
        """ShapeDtypeStructs carrying this mesh's shardings: the target of a restore."""
        shapes = jax.eval_shape(lambda: _fresh_state(self.model_config, self.tx, 0))
        return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.shardings)

    def init(self, seed: int) -> TrainState:
        """A fresh state, created directly in its shards (no full copy on one device)."""
        make = jax.jit(_fresh_state, static_argnums=(0, 1, 2), out_shardings=self.shardings)
        return make(self.model_config, self.tx, seed)


def _fresh_state(model_config, tx, seed) -> TrainState:
    params = model_lib.init_params(model_config, seed)
    return TrainState(
        params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(seed + 1)
    )


def layout_from_config(config, total_steps: int, devices=None) -> StateLayout:
    """The mesh, sharding rules, optimizer and model of a t1jax config, as one layout."""
    mesh = parallel.make_mesh(config.mesh, devices)
    model_config = model_lib.ModelConfig.from_config(config.model)
    pattern = config.optim.trainable
    labels = trainable_labels(model_lib.abstract_params(model_config), pattern) if pattern else None
    tx = make_optimizer(config.optim, total_steps, labels)
    return make_layout(model_config, tx, mesh, parallel.rules_table(config.mesh.rules))


def make_layout(model_config, tx, mesh: Mesh, rules: dict) -> StateLayout:
    params_layout = make_params_layout(model_config, mesh, rules)
    params = model_lib.abstract_params(model_config)
    rep = parallel.replicated(mesh)
    shardings = TrainState(
        params=params_layout.param_shardings,
        opt_state=parallel.optimizer_shardings(tx, params, params_layout.param_shardings, mesh),
        step=rep,
        rng=rep,
    )
    return StateLayout(params_layout, tx, shardings)
