"""The layer order of pyproject.toml's import-linter contract, checked over every folder.

import-linter (run by `make test`) sees only the deploy_robust/ folder; exporters/, calibrators/
and kernels/ install as deploy_robust subpackages from folders of their own, so this test puts
them into the same order and checks every `deploy_robust.*` import of every module, lazy ones
inside functions included: a module imports only from its own layer or the layers below.
"""

import ast
import tomllib

from tests.conftest import REPO

# Where the separately-folded subpackages sit in the order (each directly above the named layer).
MAPPED = {
    "deploy_robust.exporters": "deploy_robust.runtimes",
    "deploy_robust.calibrators": "deploy_robust.runtimes",
    "deploy_robust.kernels": "deploy_robust.bundle",
}
FOLDERS = {
    "deploy_robust": REPO / "deploy_robust",
    "deploy_robust.exporters": REPO / "exporters",
    "deploy_robust.calibrators": REPO / "calibrators",
    "deploy_robust.kernels": REPO / "kernels",
}


def _layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = list(next(c for c in config if c["type"] == "layers")["layers"])
    for package, above in MAPPED.items():
        layers.insert(layers.index(above), package)
    return layers


def _modules():
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if package == "deploy_robust" and parts and f"deploy_robust.{parts[0]}" in FOLDERS:
                continue
            yield ".".join([package, *[p for p in parts if p != "__init__"]]), path


def _layer_of(module: str, layers: list[str]) -> int | None:
    matches = [i for i, layer in enumerate(layers) if module == layer or module.startswith(layer + ".")]
    return max(matches, key=lambda i: len(layers[i])) if matches else None


def test_no_module_imports_from_a_layer_above_its_own():
    layers = _layers()
    upward = []
    for module, path in _modules():
        own = _layer_of(module, layers)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            for name in names:
                target = _layer_of(name, layers) if name.startswith("deploy_robust.") else None
                if target is not None and target < own:
                    upward.append(f"{module} -> {name} (line {node.lineno})")
    assert upward == []


def test_every_package_has_a_place_in_the_order():
    layers = _layers()
    tops = {m.split(".")[1] for m, _ in _modules() if m.count(".") >= 1}
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = next(c for c in config if c["type"] == "forbidden")["source_modules"]  # core utilities: own contract
    loose = {"__main__"} | {m.split(".")[1] for m in core}
    assert sorted(t for t in tops - loose if _layer_of(f"deploy_robust.{t}", layers) is None) == []


def test_every_module_has_a_test_file_at_its_mirrored_path():
    """deploy_robust/a/b.py -> tests/a/test_b.py (exporters/x.py -> tests/exporters/test_x.py)."""
    missing = []
    for module, path in _modules():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        parts = module.split(".")[1:]
        expected = REPO / "tests" / "/".join(parts[:-1]) / f"test_{parts[-1]}.py"
        if not expected.is_file():
            missing.append(str(expected.relative_to(REPO)))
    assert missing == []
