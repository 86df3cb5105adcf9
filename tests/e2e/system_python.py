"""What the Python that qgis_process embeds (Debian's system python3) has on its own, without the
venv's packages (which it sees only through the PYTHONPATH the runner sets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def system_python() -> Path:
    """The interpreter the venv was made from: the one QGIS embeds."""
    return Path(sys.base_prefix) / "bin" / "python3"


def system_module_file(module: str, home: Path) -> str | None:
    """Where the bare system Python imports ``module`` from; None when it cannot."""
    environment = {**os.environ, "PYTHONPATH": "", "HOME": str(home)}
    result = subprocess.run(
        [str(system_python()), "-c", f"import {module}; print({module}.__file__)"],
        env=environment,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None
