"""Where a model's parameters live: the mesh, the logical-axis rules and the parameters'
shardings. Everything that only reads weights (evaluation, sampling, loading a run) needs this
and no optimizer; training extends it with the optimizer state (t1jax.train.state.StateLayout).
"""

from __future__ import annotations

import dataclasses

import jax
from jax.sharding import Mesh

from t1jax import model as model_lib
from t1jax import parallel
from t1jax.config import base_config


@dataclasses.dataclass(frozen=True)
class ParamsLayout:
    model_config: model_lib.ModelConfig
    mesh: Mesh
    rules: dict
    param_shardings: dict

    def abstract_params(self) -> dict:
        """ShapeDtypeStructs of the parameters with this mesh's shardings: the target of a restore."""
        shapes = model_lib.abstract_params(self.model_config)
        return jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.param_shardings
        )


def make_params_layout(
    model_config: model_lib.ModelConfig, mesh: Mesh, rules: dict, divisible_only: bool = False
) -> ParamsLayout:
    """divisible_only: an axis the mesh does not divide is replicated (with a warning) instead of
    an error; what readers of a real model need (Gemma 3's one KV head on a tensor axis of 2)."""
    params = model_lib.abstract_params(model_config)
    shardings = parallel.tree_shardings(params, model_lib.logical_axes(model_config), rules, mesh, divisible_only)
    return ParamsLayout(model_config, mesh, rules, shardings)


def params_layout(model_config: model_lib.ModelConfig, mesh_config=None, devices=None) -> ParamsLayout:
    """The layout in which evaluation and sampling read `model_config`'s weights, on the mesh of a
    config's `mesh` section (default: the base config's, every device on the fsdp axis); axes the
    mesh does not divide are replicated."""
    mesh_config = base_config().mesh if mesh_config is None else mesh_config
    mesh = parallel.make_mesh(mesh_config, devices)
    return make_params_layout(model_config, mesh, parallel.rules_table(mesh_config.rules), divisible_only=True)
