"""Exceptions that carry a message meant for the analyst.

The processing layer turns every ``RsdlError`` into a ``QgsProcessingException`` unchanged, so
messages must name the bad input and say how to fix it.
"""

from __future__ import annotations

import errno
import os
import sys
import sysconfig

__all__ = [
    "DISK_FULL_ERRNOS",
    "CancelledError",
    "GridError",
    "LabelValueError",
    "MissingDependencyError",
    "ModelError",
    "ModelSpecError",
    "RsdlError",
    "os_error_message",
    "pip_install_command",
]


class RsdlError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""


class LabelValueError(RsdlError):
    """A label attribute holds a value that is not a usable class id."""


class GridError(RsdlError):
    """A raster grid cannot be used (rotated, empty, no CRS...)."""


class CancelledError(RsdlError):
    """The user cancelled the run; outputs were removed."""

    def __init__(self, message: str = "Cancelled by the user; no output was written.") -> None:
        super().__init__(message)


class ModelSpecError(RsdlError):
    """A model's metadata (its spec) holds a value that cannot be used."""


class ModelError(RsdlError):
    """A model file cannot be loaded or run (missing, not a model, corrupt, unsupported shape)."""


class MissingDependencyError(RsdlError):
    """An optional Python package (onnxruntime, torch) is not installed in QGIS's Python."""

    @classmethod
    def for_package(cls, package: str, purpose: str) -> MissingDependencyError:
        """The error for a missing package, with the install command for the running Python."""
        return cls(
            f"{purpose} needs the Python package '{package}', which is not installed in the Python "
            f"that runs QGIS. Install it with:\n    {pip_install_command(package)}\nthen restart QGIS."
        )


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def os_error_message(error: OSError, path: str | None = None) -> str:
    """An analyst's message for a failed file operation: the file, the reason and the way out.

    ``path`` names the file when the error does not (or names a temporary of ours).
    """
    where = path or error.filename
    file_text = f" '{where}'" if where else ""
    reason = error.strerror or str(error)
    if error.errno in DISK_FULL_ERRNOS:
        return (
            f"Writing{file_text} failed: {reason}. The disk is full or the file is larger than "
            "allowed: free disk space in the output folder, or choose an output folder on "
            "another disk, and run again. No partial output was kept."
        )
    where_text = f":{file_text}" if file_text else ""
    return f"{reason}{where_text}. Check the path, and that its folder exists and is writable."


def _running_python() -> str:
    """The interpreter of the Python running this code.

    Embedded in QGIS (the desktop, qgis_process), ``sys.executable`` is the QGIS program, or
    whatever ``python3`` comes first on the PATH (a pyenv shim, another install): pip would then
    install into the wrong Python. So it counts only when it lies in this Python's own ``bin``;
    else the ``pythonX.Y`` beside ``sys.exec_prefix`` is named."""
    executable = sys.executable or ""
    if os.path.basename(executable).lower().startswith("python") and os.path.dirname(
        os.path.abspath(executable)
    ) == os.path.join(sys.prefix, "bin"):
        return executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for name in (version, "python3"):  # QGIS.app on macOS has bin/python3
        candidate = os.path.join(sys.exec_prefix, "bin", name)
        if os.path.exists(candidate):
            return candidate
    return version


def _externally_managed() -> bool:
    """Whether pip refuses to install into this Python outside a venv (PEP 668: Debian 12,
    Ubuntu 23.04 and later mark their system Python so)."""
    marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
    return sys.prefix == sys.base_prefix and os.path.exists(marker)


def pip_install_command(package: str) -> str:
    """The pip command that installs ``package`` for the Python running this code.

    On Windows the OSGeo4W Shell puts QGIS's Python on the PATH. A system Python that PEP 668
    marks as externally managed (QGIS from Debian or Ubuntu packages) takes the package in the
    user's site-packages, which that Python reads too."""
    if sys.platform == "win32":
        return f"python -m pip install {package}   (in the OSGeo4W Shell that comes with QGIS)"
    flags = "--user --break-system-packages " if _externally_managed() else ""
    return f'"{_running_python()}" -m pip install {flags}{package}'
