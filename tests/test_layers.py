"""The package's layers (docs/architecture.md), read from the source: every import statement,
also those inside functions, must point down the stack

    apps -> train, eval -> runtime, sampling, rewards, data -> model, parallel -> config, errors

and the modules' top-level imports form no cycle."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "t1jax"
LAYER = {
    "errors": 0,
    "config": 1,
    "model": 2,
    "parallel": 2,
    "runtime": 3,
    "sampling": 3,
    "rewards": 3,
    "data": 3,
    "train": 4,
    "eval": 4,
    "apps": 5,
    "__main__": 5,
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _submodule(base: str, name: str) -> str:
    candidate = f"{base}.{name}"
    is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file()
    return candidate if is_module or (PACKAGE.parent / candidate.replace(".", "/")).is_dir() else base


def _imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported t1jax module, whether the import is at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                module = _module_name(path)
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # "from t1jax.rewards import safe_math" imports the module t1jax.rewards.safe_math
            names = [_submodule(base, alias.name) for alias in node.names]
        else:
            continue
        found += [(name, id(node) in top_level) for name in names if name.startswith("t1jax.")]
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_has_a_layer():
    assert {_layer(m) for m in MODULES if _layer(m)} <= set(LAYER)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_imports_point_down_the_stack(module):
    own = _layer(module)
    for imported, _ in _imports(MODULES[module]):
        other = _layer(imported)
        assert other in LAYER, f"{module} imports {imported}, which belongs to no layer"
        assert LAYER[other] <= LAYER[own], f"{module} ({own}) imports {imported} ({other}), a layer above it"
        if own in ("train", "eval"):
            assert other == own or other not in ("train", "eval"), (
                f"{module} imports {imported}: train and eval are peers"
            )


def test_config_imports_only_errors_and_itself():
    for module in (m for m in MODULES if _layer(m) == "config"):
        for imported, _ in _imports(MODULES[module]):
            assert _layer(imported) in ("config", "errors"), f"{module} imports {imported}"


def test_no_import_cycles():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for imported, top_level in _imports(path):
            target = imported if imported in MODULES else imported.rpartition(".")[0]
            if top_level and target in MODULES and target != module:
                graph[module].add(target)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_a_violation(tmp_path):
    """The checker itself: an upward import inside a function is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from t1jax.train.sft import run_sft\n")
    assert _imports(bad) == [("t1jax.train.sft", False)]
