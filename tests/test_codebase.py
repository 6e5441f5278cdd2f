"""The codebase's own rules, checked from its source: each concept table defined once, no function too long to read."""

import ast

from tests.conftest import REPO

PACKAGE_DIRS = ("deploy_robust", "exporters", "calibrators", "kernels")
MAX_FUNCTION_LINES = 60
TARGET_NAMES = {"ort-cpu", "ort-cuda", "tensorrt", "openvino"}
OP_NAMES = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _sources():
    for folder in PACKAGE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(), str(path))


def _string_collections(tree):
    """Every tuple, list or set literal whose elements are all strings, as a set of those strings."""
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Tuple, ast.List, ast.Set))
            and node.elts
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
        ):
            yield node.lineno, {e.value for e in node.elts}


def _spelled_out(names: set[str], at_least: int, home: str) -> list[str]:
    return [
        f"{file}:{line}"
        for file, tree in _sources()
        if file != home
        for line, values in _string_collections(tree)
        if len(values & names) >= at_least
    ]


def test_the_targets_are_listed_in_one_table():
    assert _spelled_out(TARGET_NAMES, 2, "deploy_robust/targets.py") == []


def test_the_weighted_ops_are_listed_in_one_place():
    assert _spelled_out(OP_NAMES, 2, "deploy_robust/onnx_ops.py") == []


def test_no_function_in_the_package_is_longer_than_60_lines():
    long = [
        f"{file}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for file, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
