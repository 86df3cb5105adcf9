"""qgis_process and `make demo` with another Python first on PATH (conda, pyenv, an activated venv).

QGIS embeds the system Python, which takes its prefix from the first ``python3`` on PATH. The
stand-in below is what conda's or pyenv's ``bin/python3`` looks like to that search: an executable
beside a ``lib/pythonX.Y/os.py`` landmark. Its standard library is empty, so a QGIS that adopts it
cannot start Python at all; the runner must never let that happen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.build_plugin import stage
from scripts.qgis_process_runner import QgisProcess, qgis_process_executable

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.qgis_process


@pytest.fixture()
def foreign_path(tmp_path) -> str:
    """PATH with a stand-in for another Python's bin folder first."""
    prefix = tmp_path / "other-python"
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python3"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    landmark = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "os.py"
    landmark.parent.mkdir(parents=True)
    landmark.touch()
    return os.pathsep.join([str(prefix / "bin"), os.environ.get("PATH", "")])


def test_the_stand_in_breaks_a_bare_qgis_process(foreign_path, tmp_path):
    """The hazard is real: qgis_process started with that PATH as it is cannot run Python."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    environment = {**os.environ, "PATH": foreign_path, "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
    result = subprocess.run(
        [qgis_process_executable(), "list"], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 or "Couldn't load SIP module" in result.stdout + result.stderr


def test_runner_works_with_another_python_first(foreign_path, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", foreign_path)
    qgis = QgisProcess(stage(tmp_path / "plugins").parent, tmp_path / "home")
    listing = qgis.run("list").stdout
    assert "rsdl:segment" in listing and "rsdl:rasterizelabels" in listing


def test_make_demo_works_with_another_python_first(foreign_path, tmp_path):
    out = tmp_path / "demo"
    environment = {**os.environ, "PATH": foreign_path}
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_DIR={out}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (out / "map.png").is_file() and (out / "classes.tif").is_file()
