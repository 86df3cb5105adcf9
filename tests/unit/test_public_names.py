"""The public names of core and inference: every module declares them (``__all__``), and the rest of
the code (plugin, training, scripts) imports nothing else from them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "rsdl_qgis_plugin"
DECLARING = sorted(
    path
    for folder in (PLUGIN / "core", PLUGIN / "inference")
    for path in folder.rglob("*.py")
    if path.name != "__init__.py" and "__pycache__" not in path.parts
)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


@pytest.mark.parametrize("path", DECLARING, ids=lambda path: module_name(path))
def test_every_module_declares_its_public_names(path):
    module = importlib.import_module(module_name(path))
    declared = getattr(module, "__all__", None)
    assert declared, f"{module_name(path)} has no __all__"
    assert len(set(declared)) == len(declared)
    missing = [name for name in declared if not hasattr(module, name)]
    assert not missing, f"{module_name(path)}.__all__ names what it does not define: {missing}"


def imports_from_declaring_modules(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from <core or inference module> import name`` in ``path``."""
    package = ".".join(path.relative_to(REPO).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        if module.startswith(("rsdl_qgis_plugin.core.", "rsdl_qgis_plugin.inference.")):
            found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


def test_the_code_imports_only_declared_names():
    users = [
        path
        for folder in (PLUGIN, REPO / "training", REPO / "scripts")
        for path in folder.rglob("*.py")
        if "__pycache__" not in path.parts
    ]
    undeclared = []
    for path in users:
        for module, name, line in imports_from_declaring_modules(path):
            target = importlib.import_module(module)
            if not hasattr(target, "__all__"):  # a subpackage: its modules are the names
                continue
            if name not in target.__all__:
                undeclared.append(f"{path.relative_to(REPO)}:{line}: {module}.{name}")
    assert not undeclared, "imported but not in the module's __all__:\n" + "\n".join(undeclared)


def test_the_scan_sees_relative_and_absolute_imports(tmp_path):
    """Guards against a vacuous pass: both import forms are found."""
    probe = PLUGIN / "processing_provider" / "segment.py"
    found = {(module, name) for module, name, _ in imports_from_declaring_modules(probe)}
    assert ("rsdl_qgis_plugin.inference.engine", "TiledInference") in found
    predict = {(m, n) for m, n, _ in imports_from_declaring_modules(REPO / "training" / "predict.py")}
    assert ("rsdl_qgis_plugin.core.tiling.blending", "BlendMode") in predict
