"""Checked GDAL calls: progress callbacks tied to a QgsFeedback, and errors that name the file.

The plugin's GDAL code checks what each call returns (``check_gdal``), as GDAL's Python bindings
report failures when exceptions are off. QGIS 3.22 leaves them off. Newer QGIS switches them on
for the whole process: its processing plugin calls ``gdal.UseExceptions()`` when it loads (3.44
does; 3.22 does not), and from GDAL 3.7 on that covers gdal, gdal_array, ogr and osr alike. Then
a failed read raises RuntimeError instead of returning None, and a dataset whose closing fails
(a full disk: the TIFF directory cannot be written) raises from its destructor, where Python can
only print "Exception ignored in delete_Dataset" and the failure is lost. So:

- ``gdal_return_codes()`` makes GDAL calls on the current thread return error codes, whatever
  the process-wide setting, and restores it afterwards (GDAL >= 3.7 keeps the setting per
  thread; other plugins and threads keep theirs). Every algorithm runs inside it, so GDAL 3.6
  and 3.10 fail the same way and ``check_gdal`` sees every failure, closing included.
- ``gdal_errors()`` turns a RuntimeError that a GDAL call raises anyway (on another thread, as
  the tile reader's; GDAL < 3.7, where nothing can override exceptions that something switched
  on) into the same error as ``check_gdal``.
- ``gdal_failure()`` is the one place that words a failed GDAL call for the analyst: the action,
  GDAL's reason, the way out, and our temporary names replaced by the outputs the analyst chose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import QgsFeedback

from ..core.errors import CancelledError, RsdlError
from ..core.files.atomic_output import public_path

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


def gdal_failure(
    action: str,
    reason: str,
    feedback: QgsFeedback | None = None,
    path: str | os.PathLike | None = None,
) -> RsdlError:
    """The error to raise for a failed GDAL call: ``action`` (naming the file), GDAL's ``reason``
    and the way out. ``path`` is the file written, whose disk is checked for space. A cancelled
    run gives the cancel error instead (GDAL fails a call whose progress callback said stop)."""
    if feedback is not None and feedback.isCanceled():
        return CancelledError()
    reason = (reason.strip() or "unknown GDAL error").rstrip(".")
    lowered = reason.lower()
    hint = ""
    # SQLite (GeoPackage) says "disk I/O error" where a write failed for a full disk or EFBIG.
    disk_full_texts = ("no space left", "disk is full", "file too large", "quota", "write", "disk i/o error")
    if any(text in lowered for text in disk_full_texts) or (path is not None and low_on_disk_space(path)):
        hint = (
            " The disk may be full: check free disk space in the output folder (or choose a "
            "folder on another disk); no partial output was kept."
        )
    elif "read" in lowered or action.startswith("Reading"):
        hint = (
            " The file may be truncated or corrupt: check it (gdalinfo -checksum) or copy or export it again."
        )
    return RsdlError(public_path(f"{action} failed: {reason}.{hint}"))


def check_gdal(
    ok: bool, action: str, feedback: QgsFeedback | None = None, path: str | os.PathLike | None = None
) -> None:
    """Raise an error naming ``action`` (and GDAL's last error message) when a GDAL call failed;
    ``path`` is the file written, whose disk is checked for space."""
    if not ok:
        raise gdal_failure(action, gdal.GetLastErrorMsg(), feedback, path)


def no_gdal_failure() -> bool:
    """Whether no GDAL call failed since the last ``gdal.ErrorReset()``. Some failures show only
    there: a dataset that could not be written completely is still returned, and closing one
    reports nothing else."""
    return gdal.GetLastErrorType() < gdal.CE_Failure


@contextlib.contextmanager
def gdal_errors(
    action: str, feedback: QgsFeedback | None = None, path: str | os.PathLike | None = None
) -> Iterator[None]:
    """Around GDAL calls that may raise (exceptions on): a RuntimeError from GDAL becomes the
    error ``check_gdal`` gives for a failed return code. Use ``check_gdal`` inside as well. GDAL's
    last error is left as it was: a caller may check for any failure since its own reset."""
    try:
        yield
    except RuntimeError as error:
        raise gdal_failure(action, str(error), feedback, path) from error


def checked_read(
    action: str,
    read: Callable[..., np.ndarray | None],
    *args: Any,
    feedback: QgsFeedback | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """``read(*args, **kwargs)`` (a GDAL ``ReadAsArray``), or the error naming ``action`` where
    GDAL failed, by a return code or by an exception (a reading thread may have them on)."""
    with gdal_errors(action, feedback):
        values = read(*args, **kwargs)
    check_gdal(values is not None, action, feedback)
    return values


@contextlib.contextmanager
def gdal_return_codes() -> Iterator[None]:
    """GDAL calls on this thread return error codes (and set GDAL's last error) inside the block,
    whatever the process-wide exception setting; the thread's setting is restored afterwards."""
    with contextlib.ExitStack() as stack:
        for module in (gdal, ogr, osr):  # gdal's manager covers gdal_array as well
            manager = getattr(module, "ExceptionMgr", None)  # GDAL >= 3.7
            if manager is not None:
                stack.enter_context(manager(useExceptions=False))
        yield
