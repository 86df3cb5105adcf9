"""Run ``qgis_process`` with the rsdl plugin enabled, coping with Debian's broken wrapper.

Debian's ``qgis_process`` script passes ``--noversioncheck``, which the 3.22 binary rejects;
the binary it wraps (``qgis_process.bin``) works, so it is preferred when present. Each runner
uses its own HOME, so enabling the plugin never touches the user's QGIS profile.

qgis_process embeds the system Python, which takes its prefix from the first ``python3`` on PATH:
with conda, pyenv or an activated environment first, it loads that Python's standard library and
fails with "Couldn't load SIP module". The runner's environment therefore starts PATH with QGIS's
own folder and drops PYTHONHOME, whatever the caller's shell holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.matrix_outputs import ARCHIVE_VARIABLE, archive_outputs, path_arguments

SITE_FOLDER = str(Path(__file__).resolve().parent / "qgis_process_site")  # its sitecustomize.py


def embedded_python_environment(executable: str, environment: dict[str, str]) -> dict[str, str]:
    """``environment`` with the folder of QGIS's executables (where the Python it embeds lives)
    first on PATH and without PYTHONHOME, so another Python first on the caller's PATH is not
    taken for QGIS's."""
    qgis_folder = str(Path(executable).resolve().parent)
    rest = [part for part in environment.get("PATH", "").split(os.pathsep) if part and part != qgis_folder]
    cleaned = {name: value for name, value in environment.items() if name != "PYTHONHOME"}
    cleaned["PATH"] = os.pathsep.join([qgis_folder, *rest])
    return cleaned


def qgis_process_executable() -> str:
    """Path of a working qgis_process: ``qgis_process.bin`` beside the wrapper when it exists."""
    wrapper = shutil.which("qgis_process")
    if wrapper:
        binary = Path(wrapper).with_name("qgis_process.bin")
        return str(binary) if binary.exists() else wrapper
    binary = shutil.which("qgis_process.bin")
    if binary:
        return binary
    raise FileNotFoundError("qgis_process was not found; install QGIS (make install).")


class QgisProcess:
    """qgis_process with the plugin from ``plugin_parent`` (the folder holding rsdl_qgis_plugin)."""

    def __init__(self, plugin_parent: Path, home: Path) -> None:
        self.executable = qgis_process_executable()
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)  # Qt refuses a runtime directory others can read
        # pytest-qgis points QGIS_CUSTOM_CONFIG_PATH at a folder every session shares: keep this
        # runner's settings (enabled plugins) in its own HOME instead.
        shared = ("QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH")
        self.env = embedded_python_environment(
            self.executable, {name: value for name, value in os.environ.items() if name not in shared}
        )
        self.env.update(
            HOME=str(home),
            XDG_RUNTIME_DIR=str(home),
            QGIS_PLUGINPATH=str(plugin_parent),
            QT_QPA_PLATFORM="offscreen",
            # qgis_process embeds the system Python: let it see the venv's packages, and make the
            # plugin's own DeprecationWarnings errors there (SITE_FOLDER's sitecustomize).
            PYTHONPATH=os.pathsep.join(
                p
                for p in (SITE_FOLDER, sysconfig.get_paths()["purelib"], os.environ.get("PYTHONPATH", ""))
                if p
            ),
        )
        self.enabled = False

    def run(
        self, *args: str, check: bool = True, timeout: float = 900, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``qgis_process ARGS`` (in ``cwd``, where relative paths resolve) and return the
        completed process (text output)."""
        if not self.enabled and args[:1] != ("plugins",):
            self.enable_plugin()
        archive = os.environ.get(ARCHIVE_VARIABLE) if args[:1] == ("run",) else None
        before = path_arguments(args, cwd) if archive else {}
        result = subprocess.run(
            [self.executable, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
        if archive and result.returncode == 0:
            archive_outputs(Path(archive), args[1], before)  # compared across QGIS versions
        if check and result.returncode != 0:
            raise RuntimeError(
                f"qgis_process {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def enable_plugin(self) -> None:
        result = self.run("plugins", "enable", "rsdl_qgis_plugin", check=False)
        if result.returncode != 0 and "already enabled" not in result.stdout + result.stderr:
            raise RuntimeError(f"Enabling the plugin failed:\n{result.stdout}\n{result.stderr}")
        self.enabled = True

    def run_algorithm(self, algorithm: str, parameters: dict[str, Any], check: bool = True) -> dict[str, Any]:
        """Run an algorithm with ``--json``; returns the parsed JSON (``results``, ``log``...)."""
        args = ["run", algorithm, "--json", "--"]
        for name, value in parameters.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            args += [f"{name}={item}" for item in values]
        result = self.run(*args, check=check)
        if result.returncode != 0:
            return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
        start = result.stdout.find("{")
        return json.loads(result.stdout[start:])


if __name__ == "__main__":
    print(qgis_process_executable(), file=sys.stdout)
