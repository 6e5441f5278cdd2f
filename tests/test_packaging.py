"""The layout the design names: top-level exporters/, calibrators/, kernels/ install under deploy_robust."""

import importlib
from pathlib import Path

import pytest

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")


def test_mapped_subpackages_resolve_to_top_level_folders():
    for name in ("exporters", "calibrators", "kernels"):
        module = importlib.import_module(f"deploy_robust.{name}")
        assert Path(module.__file__).resolve().parent == REPO / name


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {v: k for k, v in config["package-dir"].items()}
    found = set()
    for init in REPO.glob("**/__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts[0] in ("tests", ".venv", "benchmarks", "build") or rel.parts[0].startswith("."):
            continue
        top = mapping.get(rel.parts[0])
        if top is None:
            continue
        found.add(".".join([top, *rel.parts[1:]]))
    assert found == listed


def test_no_generic_top_level_modules_are_importable_from_an_install():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p.startswith("deploy_robust") for p in config["packages"])
