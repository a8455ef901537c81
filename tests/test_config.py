import pathlib
import re

import ml_collections
import pytest

from t1jax import config as config_lib
from t1jax.defaults import base_config
from t1jax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_base_and_file_and_overrides(tiny_config_path):
    config = config_lib.load(
        tiny_config_path,
        ["--config.model.num_layers=3", "optim.learning_rate=2e-4", "run.progress=true", "mesh.rules.vocab="],
    )
    assert config.model.num_layers == 3 and config.model.d_model == 32
    assert config.optim.learning_rate == pytest.approx(2e-4) and isinstance(config.optim.learning_rate, float)
    assert config.run.progress is True and config.mesh.rules.vocab == ""
    config = config_lib.load(None, {"sft.batch_size": 16, "optim.warmup_steps": 0})
    assert config.sft.batch_size == 16 and config.optim.warmup_steps == 0


def test_loaded_config_is_locked():
    config = config_lib.load()
    with pytest.raises(AttributeError):
        config.model.num_layrs = 3


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.num_layrs=4", "unknown config key 'model.num_layrs'; did you mean 'model.num_layers'"),
        ("modle.d_model=4", "did you mean 'model'"),
        ("model.num_layers=four", "'model.num_layers' must be int, could not parse 'four'"),
        ("run.progress=maybe", "'run.progress' must be bool"),
        ("model=3", "'model' is a section"),
        ("model.num_layers", "must look like --config.section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_lib.load(None, [override])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"model.num_heads": 8, "model.num_kv_heads": 3}, "num_heads (8) must be divisible by model.num_kv_heads (3)"),
        ({"model.d_model": 100, "model.num_heads": 8}, "d_model (100) must be divisible by model.num_heads (8)"),
        ({"mesh.data": -1, "mesh.fsdp": -1}, "at most one mesh size may be -1"),
        ({"mesh.rules.embed": "fsdp,pipeline"}, "unknown mesh axis 'pipeline'"),
        (
            {"sft.batch_size": 10, "sft.grad_accum_steps": 3},
            "batch_size (10) must be divisible by sft.grad_accum_steps (3)",
        ),
        ({"model.compute_dtype": "float8"}, "model.compute_dtype must be one of"),
        ({"eval.budgets": "8,x"}, "eval.budgets must be comma-separated token counts"),
        ({"eval.budgets": "16,8"}, "eval.budgets must be distinct positive increasing"),
        ({"eval.budgets": "8,256", "eval.max_new_tokens": 128}, "largest eval.budgets entry (256) exceeds"),
        ({"eval.temperature": 0.0, "eval.num_samples": 4}, "set eval.num_samples=1"),
        ({"eval.scaling_traces": 4}, "set eval.scaling_traces=1, not 4"),
        ({"eval.scaling_traces": 0, "eval.scaling_temperature": 1.0}, "eval.scaling_traces must be >= 1, got 0"),
        ({"sft.patience": -1}, "sft.patience and sft.min_improvement must be >= 0"),
        ({"sampling.stage_tokens": -4}, "sampling.stage_tokens must be >= 0"),
        ({"sft.retry_prob": 1.0}, "sft.retry_prob must be in [0, 1)"),
        ({"sft.max_failed": -1}, "sft.max_failed must be >= 0"),
        ({"sft.source": "facts"}, "sft.source must be 'traces' or 'drills'"),
        ({"demo.drill_steps": -1}, "demo.drill_steps must be >= 0"),
        ({"demo.drill_learning_rate": 0.0}, "demo.drill_learning_rate must be > 0"),
        ({"demo.drill_batch_size": 0}, "demo.drill_batch_size must be >= 1"),
        ({"rl.pack_factor": 0}, "rl.pack_factor must be >= 1, got 0"),
        ({"rl.trainable": "blocks.[3"}, "rl.trainable must be a regular expression over parameter names"),
        ({"optim.trainable": "(norm"}, "optim.trainable must be a regular expression over parameter names"),
        ({"task_knobs": "max_numbers"}, "task knobs must look like 'name=value"),
    ],
)
def test_inconsistent_values_say_what_is_wrong(overrides, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_lib.load(None, overrides)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.py"):
        config_lib.load(str(tmp_path / "nope.py"))
    bad_key = tmp_path / "bad_key.py"
    bad_key.write_text(
        "from t1jax.defaults import base_config\n"
        "def get_config():\n    c = base_config()\n    c.model.mlp_dims = 3\n    return c\n"
    )
    with pytest.raises(ConfigError, match=re.escape("unknown key 'model.mlp_dims'; did you mean 'model.mlp_dim'")):
        config_lib.load(str(bad_key))
    bad_type = tmp_path / "bad_type.py"
    bad_type.write_text(
        "from t1jax.defaults import base_config\n"
        "def get_config():\n    c = base_config()\n    c.model.num_layers = '4'\n    return c\n"
    )
    with pytest.raises(ConfigError, match="bad_type.py failed to load: TypeError: .*'num_layers'"):
        config_lib.load(str(bad_type))
    no_fn = tmp_path / "no_fn.py"
    no_fn.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_config"):
        config_lib.load(str(no_fn))


def test_mesh_sizes_must_fit_the_devices():
    from t1jax.parallel import resolve_mesh_shape

    mesh = ml_collections.ConfigDict({"data": 2, "fsdp": -1, "tensor": 2})
    assert resolve_mesh_shape(mesh, 8) == (2, 2, 2)
    with pytest.raises(ConfigError, match="does not divide the 6 available devices"):
        resolve_mesh_shape(ml_collections.ConfigDict({"data": 4, "fsdp": -1, "tensor": 1}), 6)
    with pytest.raises(ConfigError, match="needs 4 devices but 8 are available"):
        resolve_mesh_shape(ml_collections.ConfigDict({"data": 2, "fsdp": 2, "tensor": 1}), 8)


def _leaves(config, prefix=""):
    """(dotted path, value) of every leaf key."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def test_every_base_key_is_read_somewhere():
    """No dead flags: each leaf key is read as `.key` or `["key"]` in the package's code
    (the file that defines the defaults does not count). mesh.rules is a table read as a
    whole, so its entries are exempt."""
    sources = "\n".join(p.read_text() for p in (ROOT / "t1jax").rglob("*.py") if p.name != "defaults.py")
    unread = []
    for path, _ in _leaves(base_config()):
        if path.startswith("mesh.rules."):
            continue
        key = path.rsplit(".", 1)[-1]
        if not re.search(rf"\.{key}\b|\"{key}\"", sources):
            unread.append(path)
    assert not unread, f"config keys that no code reads: {unread}"
    assert "mesh.rules" in sources or "rules_table(config.mesh.rules)" in sources


_CONFIG_FILES = [p for p in sorted((ROOT / "configs").glob("*.py")) if "def get_config" in p.read_text()]


@pytest.mark.parametrize("path", _CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """Every config in configs/ (ablations.py is the sweep's grid, not a config) is valid: a
    misspelt key or a bad combination would fail here."""
    config = config_lib.load(str(path))
    assert config.run.workdir


def test_demo_long_is_the_demo_with_longer_rl():
    demo = dict(_leaves(config_lib.load(str(ROOT / "configs" / "demo.py"))))
    long = dict(_leaves(config_lib.load(str(ROOT / "configs" / "demo_long.py"))))
    # the step count that README.md's figures for demo_long were measured with
    assert (demo["rl.num_steps"], long["rl.num_steps"]) == (30, 800)
    differing = {key for key, value in long.items() if demo.get(key) != value}
    assert differing == {"run.workdir", "rl.num_steps", "demo.rl_checkpoints"}
