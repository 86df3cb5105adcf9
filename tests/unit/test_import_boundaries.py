"""The import rules of DESIGN.md section 2, checked by import-linter with the contracts in
pyproject.toml ([tool.importlinter]): layers gui -> processing_provider -> (qgis_io | inference) ->
core; core free of qgis, osgeo, onnxruntime and torch; training on the QGIS-free parts only;
nothing imports training; the model contract stands apart from the rest of core.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the packages below ``root`` (its working folder is put first on sys.path)."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing; run `make install` (requirements/dev.txt).")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_source_keeps_every_import_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("rsdl_qgis_plugin/core/raster/_probe.py", "from qgis.core import QgsProject\n", "core imports"),
        ("rsdl_qgis_plugin/core/tiling/_probe.py", "from ...qgis_io import compat\n", "gui ->"),
        ("rsdl_qgis_plugin/core/contract/_probe.py", "from ..datasets import chips\n", "model contract"),
        ("training/_probe.py", "from rsdl_qgis_plugin.qgis_io import compat\n", "training uses"),
        ("rsdl_qgis_plugin/inference/_probe.py", "import training\n", "never imports training"),
    ],
)
def test_a_violation_breaks_its_contract(tmp_path, module, line, contract):
    """On a copy of the source with one forbidden import added, the named contract breaks (a
    transitive import may break others too)."""
    for item in ("rsdl_qgis_plugin", "training", "pyproject.toml"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / item)
    (tmp_path / module).write_text(line, encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout
