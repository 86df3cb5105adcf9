"""The import rules of DESIGN.md section 2, checked mechanically on the source (no imports run).

gui -> processing_provider -> (qgis_io | inference) -> core; training -> rsdl_qgis_plugin.core and
rsdl_qgis_plugin.inference only; core imports neither qgis, osgeo, onnxruntime nor torch; nothing
imports training. Training may use inference because both are QGIS-free and batch prediction reuses
the plugin's engine rather than a copy of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "rsdl_qgis_plugin"

# For each package: top-level modules or plugin subpackages it must never import.
FORBIDDEN = {
    "core": {
        "qgis",
        "osgeo",
        "onnxruntime",
        "torch",
        "training",
        "processing_provider",
        "qgis_io",
        "inference",
        "gui",
    },
    "inference": {"qgis", "training", "processing_provider", "qgis_io", "gui"},
    "qgis_io": {"training", "processing_provider", "gui", "torch"},
    "processing_provider": {"training", "gui"},
    "gui": {"training"},
}


def imported_names(path: Path) -> set[str]:
    """Absolute top-level modules and plugin subpackages (relative or absolute) a file imports."""
    names: set[str] = set()
    package_parts = path.relative_to(REPO).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                modules = [".".join([*base, node.module] if node.module else base)]
                if not node.module:
                    modules += [".".join([*base, alias.name]) for alias in node.names]
            else:
                modules = [node.module or ""]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            names.add(parts[0])
            if parts[0] == "rsdl_qgis_plugin" and len(parts) > 1:
                names.add(parts[1])
    return names


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_plugin_package_respects_import_direction(package):
    violations = {
        str(path.relative_to(REPO)): sorted(imported_names(path) & FORBIDDEN[package])
        for path in python_files(PLUGIN / package)
    }
    assert {k: v for k, v in violations.items() if v} == {}


def test_training_imports_no_qgis_and_only_the_plugin_core_and_inference():
    plugin_parts = {p.stem for p in PLUGIN.iterdir() if p.name not in ("__init__.py", "__pycache__")}
    for path in python_files(REPO / "training"):
        names = imported_names(path)
        assert not names & {"qgis", "processing"}, path
        assert names & plugin_parts <= {"core", "inference"}, path


def test_nothing_imports_training():
    for path in python_files(PLUGIN):
        assert "training" not in imported_names(path), path


def test_checker_sees_a_violation(tmp_path):
    """The checker itself must catch both import forms (guards against a vacuous pass)."""
    fake = PLUGIN / "core" / "_probe_violation.py"
    fake.write_text("from qgis.core import QgsProject\nfrom ..qgis_io import styling\n")
    try:
        assert {"qgis", "qgis_io"} <= imported_names(fake)
    finally:
        fake.unlink()
