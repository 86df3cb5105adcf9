"""Checked GDAL calls: progress callbacks tied to a QgsFeedback, and errors that name the file.

GDAL's Python bindings return error codes unless exceptions are switched on globally, which
would change behaviour for every other plugin in the same QGIS; so results are checked here.
"""

from __future__ import annotations

from typing import Callable

from osgeo import gdal
from qgis.core import QgsFeedback

from ..core.errors import CancelledError, RsdlError

GdalProgress = Callable[[float, str, object], int]


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


def check_gdal(ok: bool, action: str, feedback: QgsFeedback | None = None) -> None:
    """Raise an error naming ``action`` (and GDAL's reason) when a GDAL call failed."""
    if ok:
        return
    raise_if_cancelled(feedback)
    reason = gdal.GetLastErrorMsg() or "unknown GDAL error"
    hint = ""
    if "No space left" in reason or "write" in reason.lower() or "File too large" in reason:
        hint = " Check free disk space in the output folder."
    raise RsdlError(f"{action} failed: {reason}.{hint}")
