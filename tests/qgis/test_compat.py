"""QGIS 4 / Qt6 readiness, checked mechanically on every QGIS in the matrix.

- Qt is imported through ``qgis.PyQt`` only, never PyQt5 or PyQt6 directly.
- Enum values come from ``qgis_io/compat.py`` only: no other module of the plugin (or the scripts
  that run inside QGIS) takes an enum value from a QGIS or Qt class, where QGIS 3.36+ resolves the
  old names only through monkey-patched aliases that QGIS 4 drops.
- On QGIS >= 3.40 every compat value is the scoped one; on 3.22 the fallback is the old name;
  where both names exist they mean the same value (a wrong pairing fails here).
- Qt names: Debian ships no QGIS 4 (Qt6), so the Qt names the plugin uses are looked up in PyQt6
  from PyPI (installed by ``make install`` into its own folder, never imported beside PyQt5).
"""

from __future__ import annotations

import ast
import enum
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from qgis.core import Qgis

from rsdl_qgis_plugin.qgis_io import compat

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [
        *(REPO / "rsdl_qgis_plugin").rglob("*.py"),
        REPO / "scripts/render_map.py",
        REPO / "scripts/build_modeler_model.py",
    ]
)
COMPAT = REPO / "rsdl_qgis_plugin/qgis_io/compat.py"
PYQT6 = Path(sys.prefix) / "pyqt6"  # make install: pip install --target $(VENV)/pyqt6
NEW_QGIS = 34000


def _is_enum_value(value: object) -> bool:
    """A member of a Python enum (scoped QGIS/PyQt enums) or of a sip enum (PyQt5's unscoped)."""
    if isinstance(value, enum.Enum):
        return True
    return type(type(value)).__name__ == "enumtype"


def _qgis_names(tree: ast.Module) -> dict[str, object]:
    """Names a module imports from qgis.* (classes), resolved here."""
    import importlib

    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qgis":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def _enum_uses(path: Path) -> list[str]:
    """``Class.Member`` (or ``Class.Enum.Member``) expressions on QGIS/Qt classes that are enum values."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = _qgis_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, base = [node.attr], node.value
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if not isinstance(base, ast.Name) or base.id not in names:
            continue
        value = names[base.id]
        for part in chain:
            value = getattr(value, part, None)
        if _is_enum_value(value):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {base.id}.{'.'.join(chain)}")
    return found


def test_enum_values_come_from_the_compat_module_only():
    uses = [use for path in SOURCES if path != COMPAT for use in _enum_uses(path)]
    assert uses == [], "take these from rsdl_qgis_plugin/qgis_io/compat.py:\n" + "\n".join(uses)


def test_qt_comes_through_qgis_pyqt_only():
    """qgis.PyQt is PyQt5 under QGIS 3 and PyQt6 under QGIS 4; a direct import pins one of them."""
    direct = []
    for path in [*SOURCES, *(REPO / "training").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            direct += [
                f"{path.relative_to(REPO)}:{node.lineno}: {m}" for m in modules if m.startswith("PyQt")
            ]
    assert direct == []


def test_the_scan_sees_an_enum_use(tmp_path):
    """The scan above must be able to fail: an old-style name in a module is found."""
    probe = REPO / "rsdl_qgis_plugin" / "_probe_enum_use.py"
    probe.write_text("from qgis.core import QgsProcessing\nTYPE = QgsProcessing.TypeVectorPolygon\n")
    try:
        assert _enum_uses(probe) == ["rsdl_qgis_plugin/_probe_enum_use.py:2: QgsProcessing.TypeVectorPolygon"]
    finally:
        probe.unlink()


@pytest.mark.parametrize("constant", sorted(compat.ENUM_NAMES))
def test_compat_value_fits_this_qgis(constant):
    name = compat.ENUM_NAMES[constant]
    value = getattr(compat, constant)
    if Qgis.QGIS_VERSION_INT >= NEW_QGIS:
        assert compat.uses_scoped(name), f"{name.scoped} is missing on QGIS {Qgis.QGIS_VERSION}"
        assert value == compat.lookup(name.scoped)
    elif not compat.uses_scoped(name):
        assert value == compat.lookup(name.legacy)
    try:
        legacy = compat.lookup(name.legacy)
        scoped = compat.lookup(name.scoped)
    except AttributeError:
        return  # only one of the names exists on this QGIS
    as_int = lambda v: v.value if isinstance(v, enum.Enum) else int(v)  # noqa: E731
    assert as_int(legacy) == as_int(scoped), f"{name.scoped} and {name.legacy} differ"


def _pyqt_names() -> dict[str, list[str]]:
    """Every name the plugin imports from qgis.PyQt.<module>, plus the Qt enums compat uses."""
    names: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis.PyQt."):
                module = node.module.split(".")[-1]
                names.setdefault(module, set()).update(alias.name for alias in node.names)
    return {module: sorted(values) for module, values in names.items()}


# Qt6 moved these from QtWidgets to QtGui; QGIS 4's qgis.PyQt.QtWidgets re-exports them.
QGIS_QT6_REEXPORTS = {
    "QtWidgets": {"QAction", "QActionGroup", "QShortcut", "QUndoCommand", "QFileSystemModel"}
}

_PYQT6_CHECK = """
import importlib, json, sys
request = json.loads(sys.argv[1])
missing = []
for module, names in request["imports"].items():
    found = importlib.import_module("PyQt6." + module)
    moved = request["moved"].get(module, [])
    gui = importlib.import_module("PyQt6.QtGui")
    for name in names:
        if not hasattr(found, name) and not (name in moved and hasattr(gui, name)):
            missing.append(module + "." + name)
from PyQt6 import QtCore, QtGui
for dotted in request["enums"]:
    head, *rest = dotted.split(".")
    value = getattr(QtCore, head, None) or getattr(QtGui, head, None)
    for part in rest:
        value = getattr(value, part, None)
    if value is None:
        missing.append(dotted)
print(json.dumps(missing))
"""


def _missing_in_pyqt6(request: dict) -> list[str]:
    """The names of ``request`` that PyQt6 lacks, looked up in a separate Python (PyQt5 and PyQt6
    cannot share one)."""
    environment = {**os.environ, "PYTHONPATH": str(PYQT6), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-c", _PYQT6_CHECK, json.dumps(request)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_qt_names_exist_in_pyqt6():
    assert (PYQT6 / "PyQt6").is_dir(), f"PyQt6 is missing from {PYQT6}: run make install"
    qt_classes = {"Qt", "QMetaType", "QPainter", "QVariant", "QImage"}
    enums = [n.scoped for n in compat.ENUM_NAMES.values() if n.scoped.split(".")[0] in qt_classes]
    assert enums, "compat holds Qt enum names; the check would test nothing"
    request = {
        "imports": _pyqt_names(),
        "moved": {module: sorted(names) for module, names in QGIS_QT6_REEXPORTS.items()},
        "enums": enums,
    }
    assert _missing_in_pyqt6(request) == [], "missing in PyQt6 (QGIS 4)"
    # The same request with a name Qt6 dropped must fail (the check can fail).
    assert _missing_in_pyqt6({**request, "enums": ["Qt.AlignVCenter"]}) == ["Qt.AlignVCenter"]


def test_the_plugins_own_deprecation_warnings_are_errors():
    """pyproject's filter: a DeprecationWarning raised from plugin code fails the test run."""
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit(
            "deprecated", DeprecationWarning, "compat.py", 1, module="rsdl_qgis_plugin.qgis_io"
        )


@pytest.mark.skipif(Qgis.QGIS_VERSION_INT < 33800, reason="QgsField deprecates QVariant types from 3.38")
def test_a_deprecated_qgis_call_from_plugin_code_fails_the_tests():
    """The real case behind the filter: QGIS's own DeprecationWarning for a deprecated call, made
    from a frame of a plugin module, is an error; the same call from test code stays silent."""
    source = (
        "from qgis.core import QgsField\nfrom qgis.PyQt.QtCore import QVariant\nQgsField('x', QVariant.Int)\n"
    )
    with pytest.raises(DeprecationWarning):
        exec(compile(source, "rsdl_qgis_plugin/probe.py", "exec"), {"__name__": "rsdl_qgis_plugin.probe"})
    exec(compile(source, "tests/probe.py", "exec"), {"__name__": "tests.probe"})
