"""Checked GDAL calls: progress callbacks tied to a QgsFeedback, and errors that name the file.

GDAL's Python bindings return error codes unless exceptions are switched on globally, which
would change behaviour for every other plugin in the same QGIS; so results are checked here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from osgeo import gdal
from qgis.core import QgsFeedback

from ..core.atomic_output import public_path
from ..core.errors import CancelledError, RsdlError

GdalProgress = Callable[[float, str, object], int]
# Less free space than this where a write failed: the disk is (nearly) full, whatever GDAL says
# (a full GeoPackage reports a missing table, not the full disk that caused it).
LOW_DISK_SPACE = 1 << 20


def progress_callback(feedback: QgsFeedback | None, start: float, end: float) -> GdalProgress:
    """A GDAL progress callback mapping 0..1 to start..end percent; returns 0 to cancel."""

    def callback(complete: float, _message: str, _data: object) -> int:
        if feedback is None:
            return 1
        if feedback.isCanceled():
            return 0
        feedback.setProgress(start + (end - start) * complete)
        return 1

    return callback


def raise_if_cancelled(feedback: QgsFeedback | None) -> None:
    """Stop work at a safe point when the user pressed cancel."""
    if feedback is not None and feedback.isCanceled():
        raise CancelledError()


def low_on_disk_space(path: str | os.PathLike) -> bool:
    """Whether the disk that holds ``path`` (or its nearest existing folder) is nearly full."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < LOW_DISK_SPACE
    except OSError:
        return False


def check_gdal(
    ok: bool, action: str, feedback: QgsFeedback | None = None, path: str | os.PathLike | None = None
) -> None:
    """Raise an error naming ``action`` (and GDAL's reason) when a GDAL call failed; ``path`` is
    the file written, whose disk is checked for space."""
    if ok:
        return
    raise_if_cancelled(feedback)
    reason = (gdal.GetLastErrorMsg() or "unknown GDAL error").rstrip(".")
    lowered = reason.lower()
    hint = ""
    disk_full_texts = ("no space left", "disk is full", "file too large", "quota", "write")
    if any(text in lowered for text in disk_full_texts) or (path is not None and low_on_disk_space(path)):
        hint = (
            " The disk may be full: check free disk space in the output folder (or choose a "
            "folder on another disk); no partial output was kept."
        )
    elif "read" in lowered:
        hint = (
            " The file may be truncated or corrupt: check it (gdalinfo -checksum) or copy or export it again."
        )
    raise RsdlError(public_path(f"{action} failed: {reason}.{hint}"))
