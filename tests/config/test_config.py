import ast
import dataclasses
import pathlib
import re
import subprocess
import sys

import ml_collections
import pytest

from t1jax import config as config_lib
from t1jax.config import ModelConfig, base_config
from t1jax.data.tasks import check_tasks
from t1jax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]


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
        ({"sft.grad_accum_steps": -1}, "sft.grad_accum_steps must be >= 0 (0: automatic), got -1"),
        ({"model.compute_dtype": "float8"}, "model.compute_dtype must be one of"),
        ({"eval.budgets": "8,x"}, "eval.budgets must be comma-separated token counts"),
        ({"eval.budgets": "16,8"}, "eval.budgets must be distinct positive increasing"),
        ({"eval.budgets": "8,256", "eval.sampling.max_new_tokens": 128}, "largest eval.budgets entry (256) exceeds"),
        ({"eval.sampling.temperature": 0.0, "eval.sampling.num_samples": 4}, "set eval.sampling.num_samples=1"),
        ({"eval.scaling_traces": 4}, "set eval.scaling_traces=1, not 4"),
        ({"eval.scaling_traces": 0, "eval.scaling_temperature": 1.0}, "eval.scaling_traces must be >= 1, got 0"),
        ({"sft.patience": -1}, "sft.patience and sft.min_improvement must be >= 0"),
        ({"sampling.stage_tokens": -4}, "sampling.stage_tokens must be >= 0"),
        ({"sft.retry_prob": 1.0}, "sft.retry_prob must be in [0, 1)"),
        ({"sft.max_failed": -1}, "sft.max_failed must be >= 0"),
        ({"sft.source": "facts"}, "sft.source must be 'traces' or 'drills'"),
        ({"sft.batch_size": 0}, "sft.batch_size must be positive, got 0"),
        ({"sft.num_builtin_examples": 0}, "sft.num_builtin_examples must be positive, got 0"),
        ({"rl.learning_rate": -1.0}, "rl.learning_rate must be positive, got -1.0"),
        ({"demo.drill_steps": -1}, "demo.drill_steps must be >= 0"),
        ({"demo.drill_learning_rate": 0.0}, "demo.drill_learning_rate must be > 0"),
        ({"demo.drill_batch_size": 0}, "demo.drill_batch_size must be >= 1"),
        ({"rl.pack_factor": 0}, "rl.pack_factor must be >= 1, got 0"),
        ({"rl.trainable": "blocks.[3"}, "rl.trainable must be a regular expression over parameter names"),
        ({"optim.trainable": "(norm"}, "optim.trainable must be a regular expression over parameter names"),
    ],
)
def test_inconsistent_values_say_what_is_wrong(overrides, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_lib.load(None, overrides)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"task_knobs": "max_numbers"}, "task knobs must look like 'name=value"),
        ({"task_knobs": "no_such_knob=3"}, "countdown: unknown knob(s) no_such_knob"),
        ({"rl.task": "sudoku"}, "unknown task 'sudoku'; valid tasks:"),
        ({"sft.task": "linear_equation", "task_knobs": "max_numbers=3"}, "linear_equation: unknown knob(s)"),
    ],
)
def test_check_tasks_names_the_bad_task_or_knob(overrides, expected):
    """Task names and knobs are checked by the tasks (the config package imports no task): the CLI
    calls check_tasks right after loading, before any training."""
    config = config_lib.load(None, overrides)  # loads: the config alone is consistent
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_tasks(config)
    check_tasks(config_lib.load())  # the defaults pass


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.py"):
        config_lib.load(str(tmp_path / "nope.py"))
    bad_key = tmp_path / "bad_key.py"
    bad_key.write_text(
        "from t1jax.config import base_config\n"
        "def get_config():\n    c = base_config()\n    c.model.mlp_dims = 3\n    return c\n"
    )
    with pytest.raises(ConfigError, match=re.escape("unknown key 'model.mlp_dims'; did you mean 'model.mlp_dim'")):
        config_lib.load(str(bad_key))
    bad_type = tmp_path / "bad_type.py"
    bad_type.write_text(
        "from t1jax.config import base_config\n"
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


def _sections(config, prefix=""):
    """The dotted path of every section and sub-section (model, mesh, mesh.rules, ...)."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield prefix + key
            yield from _sections(value, f"{prefix}{key}.")


_SECTIONS = set(_sections(base_config()))
_TOP_LEVEL_KEYS = {key for key in base_config().keys() if key not in _SECTIONS}  # task_knobs
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _scope_nodes(node):
    """The nodes of one scope: nested functions are yielded but not entered (scopes of their own)."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, _SCOPES):
            yield from _scope_nodes(child)


def _strings(expr, constants: dict) -> set[str]:
    """The strings a loop over `expr` yields: a literal tuple, a module-level tuple, or a tuple of
    t1jax.config (e.g. MESH_AXES)."""
    if isinstance(expr, ast.Name):
        if expr.id in constants:
            return _strings(constants[expr.id], {})
        value = getattr(config_lib, expr.id, None)
        return set(value) if isinstance(value, tuple) and all(isinstance(v, str) for v in value) else set()
    if isinstance(expr, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in expr.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def _section_reads(trees) -> set[str]:
    """The dotted keys `section.key` that the modules `trees` read through an expression that is that
    section: `<config>.rl.seed` (config.rl.seed, self.config.rl.seed, c.rl.seed: `<config>` is
    named c, cfg or *config, so `layout.mesh` is no section); `r.seed` where `r` is bound
    to the section in the same function or an enclosing one (`r = config.rl`, `s, run = config.sft,
    config.run`) or is the parameter of a function that some call passes the section
    (`make_optimizer(config.optim)` binds `optim_config` in `def make_optimizer(optim_config, ...)`,
    by the function's name); `r["seed"]`, `getattr(r, "seed")`, and `r[k]` with `k` looping over
    string constants. Top-level keys (task_knobs) are read as `.task_knobs`. Writes (configs setting
    values) and text in strings and comments do not count."""
    passed: dict[str, dict[int | str, set[str]]] = {}  # function name -> parameter -> sections

    def visit(scope, inherited: dict[str, set[str]], constants: dict, reads: set[str]) -> None:
        aliases = dict(inherited)
        nodes = list(_scope_nodes(scope))

        def section_of(expr) -> set[str]:
            if isinstance(expr, ast.Name):
                return aliases.get(expr.id, set())
            if isinstance(expr, ast.Attribute):
                outer = section_of(expr.value)
                if outer:
                    return {f"{o}.{expr.attr}" for o in outer} & _SECTIONS  # a sub-section: mesh.rules
                base = getattr(expr.value, "id", getattr(expr.value, "attr", ""))
                return {expr.attr} & _SECTIONS if re.fullmatch(r"c|cfg|\w*config", base) else set()
            return set()

        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = [a.arg for a in [*scope.args.posonlyargs, *scope.args.args]]
            offset = 1 if params[:1] in (["self"], ["cls"]) else 0
            for where, sections in passed.get(scope.name, {}).items():
                index = where if isinstance(where, str) else where + offset
                name = index if isinstance(index, str) else (params[index] if index < len(params) else None)
                if name:
                    aliases[name] = aliases.get(name, set()) | sections
        assigns = [n for n in nodes if isinstance(n, ast.Assign)]
        for _ in range(2):  # twice: `o = optim_config` may come before its own alias is known
            for node in assigns:
                for target in node.targets:
                    pairs = [(target, node.value)]
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = zip(target.elts, node.value.elts)
                    for name, value in pairs:
                        if isinstance(name, ast.Name) and section_of(value):
                            aliases[name.id] = section_of(value)
        loop_values: dict[str, set[str]] = {}
        for node in nodes:
            if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
                loop_values.setdefault(node.target.id, set()).update(_strings(node.iter, constants))
        for node in nodes:
            keys: set[str] = set()
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                keys = {f"{s}.{node.attr}" for s in section_of(node.value)}
                if not keys and node.attr in _TOP_LEVEL_KEYS:
                    keys = {node.attr}  # a top-level key, whatever the config is called
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                index = node.slice
                if isinstance(index, ast.Constant) and isinstance(index.value, str):
                    names = {index.value}
                else:
                    names = loop_values.get(index.id, set()) if isinstance(index, ast.Name) else set()
                keys = {f"{s}.{name}" for s in section_of(node.value) for name in names}
            elif isinstance(node, ast.Call):
                func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if func == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    keys = {f"{s}.{node.args[1].value}" for s in section_of(node.args[0])}
                arguments = [*enumerate(node.args), *((k.arg, k.value) for k in node.keywords if k.arg)]
                for where, value in arguments:
                    if func and section_of(value):
                        passed.setdefault(func, {}).setdefault(where, set()).update(section_of(value))
            reads.update(keys)
            if isinstance(node, _SCOPES):
                visit(node, aliases, constants, reads)

    while True:  # until no call passes a section to a function that was not known to get it
        before = sum(len(sections) for params in passed.values() for sections in params.values())
        reads: set[str] = set()
        for tree in trees:
            constants = {
                target.id: node.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            visit(tree, {}, constants, reads)
        if sum(len(sections) for params in passed.values() for sections in params.values()) == before:
            return reads


def _model_field_reads() -> set[str]:
    """Attributes read in the model's code and in ModelConfig's own methods: the model section
    reaches the model only as a ModelConfig (ModelConfig.from_config(config.model)), the one
    config object of t1jax/model/."""
    trees = [ast.parse(p.read_text()) for p in sorted((ROOT / "t1jax" / "model").glob("*.py"))]
    module = ast.parse((ROOT / "t1jax" / "config" / "model.py").read_text())
    trees += [n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "ModelConfig"]
    return {
        f"model.{node.attr}"
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
    }


def _unread_keys() -> list[str]:
    """The keys of base_config() that no code under t1jax/ reads qualified by their section (the
    config package itself, where the keys are defined and checked, does not count)."""
    config_dir = ROOT / "t1jax" / "config"
    files = [p for p in sorted((ROOT / "t1jax").rglob("*.py")) if config_dir not in p.parents]
    reads = _model_field_reads() | _section_reads([ast.parse(p.read_text(), str(p)) for p in files])
    keys = [path for path, _ in _leaves(base_config()) if not path.startswith("mesh.rules.")]
    # mesh.rules is a table read as a whole (its entries are logical axes, not options)
    return [key for key in [*keys, "mesh.rules"] if key not in reads]


def test_every_base_key_is_read_somewhere():
    """No dead flags: each leaf key is read qualified by its section (so `run.seed` and
    `sampling.seed` being read does not make an `rl.seed` live)."""
    assert not _unread_keys(), f"config keys that no code reads: {_unread_keys()}"


def test_a_key_that_nothing_reads_is_caught(monkeypatch):
    """The check above is honest: a new key with the name of a key of another section fails it."""
    from t1jax.config import training

    rl_section = training.rl_section

    def with_dead_key():
        rl = rl_section()
        rl.seed = 0  # run.seed and sampling.seed are read; rl.seed never is
        return rl

    monkeypatch.setitem(config_lib.base.SECTIONS, "rl", (with_dead_key, training.check_rl))
    assert _unread_keys() == ["rl.seed"]


def test_section_reads_are_qualified():
    code = """
def f(config):
    r, run = config.rl, config.run
    config.eval.top_p, r.kl_beta, run.seed, config.task_knobs, getattr(config.sft, "pack"), r["clip_low"]
    make_mesh(config.mesh)
    schedule(r, optim_config=config.optim)
    def inner():
        return r.penalty, config.mesh.rules.batch
    x = something_else
    x.anchor_mu, config.demo_sft_dir, x.top_p, layout.mesh.shape, self.rl.seed
    config.sampling.seed = 3
def make_mesh(mesh):
    return [mesh[a] for a in MESH_AXES]
def schedule(self, section, optim_config):
    o = optim_config
    return o.b1, section.clip_high
def not_called(optim_config):
    return optim_config.b2
"""
    reads = _section_reads([ast.parse(code)])
    expected = {"eval.top_p", "rl.kl_beta", "run.seed", "task_knobs", "sft.pack", "rl.clip_low", "rl.penalty"}
    expected |= {"mesh.data", "mesh.fsdp", "mesh.tensor", "mesh.rules", "mesh.rules.batch", "optim.b1", "rl.clip_high"}
    assert expected <= reads
    not_reads = {"rl.anchor_mu", "eval.anchor_mu", "sampling.seed", "rl.seed", "optim.b2", "rl.top_p", "mesh.shape"}
    assert not not_reads & reads


def test_config_imports_nothing_above_it():
    """Layering: t1jax.config imports only t1jax.errors of the rest of t1jax, and not JAX
    (`t1jax --help` and config errors stay fast)."""
    code = "import sys, t1jax.config; print(*sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    imported = [m for m in out.split() if m == "jax" or m.startswith(("t1jax.", "jax."))]
    assert "t1jax.config.loading" in imported
    allowed = ("t1jax.errors", "t1jax.config")
    outside = [m for m in imported if m not in allowed and not m.startswith("t1jax.config.")]
    assert not outside, f"t1jax.config imports {outside}"


def test_model_section_is_built_from_model_config():
    """ModelConfig is the one source of the model's defaults."""
    import t1jax.model

    section, fields = base_config().model.to_dict(), dataclasses.asdict(ModelConfig())
    assert section == fields
    assert {k: type(v) for k, v in section.items()} == {k: type(v) for k, v in fields.items()}
    assert ModelConfig.from_config(base_config().model) == ModelConfig()
    assert t1jax.model.ModelConfig is ModelConfig


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
    # the step count that docs/results' figures for demo_long were measured with
    assert (demo["rl.num_steps"], long["rl.num_steps"]) == (30, 800)
    differing = {key for key, value in long.items() if demo.get(key) != value}
    assert differing == {"run.workdir", "rl.num_steps", "demo.rl_checkpoints"}


def test_the_config_knows_exactly_the_prompt_formats_of_data_chat():
    from t1jax.config.training import PROMPT_FORMATS
    from t1jax.data.chat import PROMPT_FORMATS as FORMATS

    assert tuple(FORMATS) == PROMPT_FORMATS
    with pytest.raises(ConfigError, match="data.prompt_format must be one of plain, chat, qwen_math_cot"):
        config_lib.load(None, {"data.prompt_format": "alpaca"})
