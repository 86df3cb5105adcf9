"""Outputs that are complete or absent: write to a hidden temporary name, then rename.

A file output is written as ``.<name>.rsdl-tmp-<random><suffix>`` beside the final path. On
success it and its sidecars (``.aux.xml``, ``.qml``...) are renamed into place, the main file
last; on any exception, cancel included, every temporary file is removed and the final path is
left as it was. ``AtomicOutputs`` does the same for several files that belong together (a class
raster, its confidence raster and styles): none is renamed until every one is complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import RsdlError

__all__ = [
    "RASTER_SIDECARS",
    "TEMP_MARKER",
    "AtomicOutputs",
    "atomic_file",
    "atomic_folder",
    "check_output_folder",
    "leftover_temporaries",
    "public_path",
    "release_failed_frames",
    "temporary_sibling",
]

TEMP_MARKER = ".rsdl-tmp-"
RASTER_SIDECARS = (".aux.xml",)


# ".<stem>.rsdl-tmp-<8 random>" (+ the suffix for files), inside any path or message.
_TEMPORARY_NAME = re.compile(
    r"(?<![^/\\\s'\"`(])\.([^/\\\s'\"`]+?)" + re.escape(TEMP_MARKER) + r"[0-9a-z_]{8}"
)


def check_output_folder(path: Path) -> None:
    """Refuse an output whose folder is missing or read-only, naming the folder.

    Writability is probed by creating a file: ``os.access`` says yes to root on read-only places
    (/proc, a read-only mount seen through some filesystems) and knows nothing of ACLs.
    """
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise RsdlError(f"'{folder}' is a file, not a folder; choose an output path inside a folder.")
    if not folder.is_dir():
        raise RsdlError(f"The output folder '{folder}' does not exist; create it or choose another.")
    try:
        handle, probe = tempfile.mkstemp(prefix=".rsdl-write-probe-", dir=folder)
    except OSError as error:
        raise RsdlError(
            f"The output folder '{folder}' is not writable ({error.strerror}); choose another folder."
        ) from None
    os.close(handle)
    _remove_quietly(Path(probe))


def public_path(path: str | os.PathLike) -> str:
    """``path`` (or any message) with our temporary names replaced by the final ones: an
    analyst must read the output they chose, not a hidden name that is gone after the run."""
    return _TEMPORARY_NAME.sub(r"\1", str(path))


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary path in the same folder (so the final rename is atomic)."""
    return path.with_name(f".{path.stem}{TEMP_MARKER}{uuid.uuid4().hex[:8]}{path.suffix}")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def release_failed_frames(error: BaseException | None) -> None:
    """Drop the locals of the frames a failure left behind (GDAL datasets among them), so the
    files they hold open close before we remove them: Windows cannot delete an open file, and
    Linux keeps its disk space until it closes. Frames still running keep their locals."""
    if error is not None and error.__traceback__ is not None:
        traceback.clear_frames(error.__traceback__)


class AtomicOutputs:
    """Files that appear together or not at all: ``with AtomicOutputs() as outputs: ...``.

    ``temporary(final)`` gives the hidden path to write ``final`` to (the same path on every
    call). When the block ends without error, every file must exist; only then are they renamed
    into place. On any error every temporary is removed and the final paths are left as they were.
    """

    def __init__(self) -> None:
        self._files: dict[Path, tuple[Path, tuple[str, ...]]] = {}

    def temporary(self, final_path: str | os.PathLike, sidecars: tuple[str, ...] = RASTER_SIDECARS) -> Path:
        """The temporary path of ``final_path`` (its folder is checked on the first call)."""
        final = Path(final_path)
        if final not in self._files:
            check_output_folder(final)
            self._files[final] = (temporary_sibling(final), sidecars)
        return self._files[final][0]

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, error_type, error, trace) -> bool:
        try:
            if error_type is None:
                self._commit()
        finally:
            release_failed_frames(error)
            self._discard()
        return False

    def _commit(self) -> None:
        for final, (temp, _sidecars) in self._files.items():
            if not temp.exists():
                raise RsdlError(f"No output was produced for '{final}'.")
        for final, (temp, sidecars) in self._files.items():
            for suffix in sidecars:
                stale = Path(str(final) + suffix)
                written = Path(str(temp) + suffix)
                if written.exists():
                    os.replace(written, stale)
                else:
                    _remove_quietly(stale)  # a sidecar of an older file would mislabel the new one
            os.replace(temp, final)

    def _discard(self) -> None:
        for temp, sidecars in self._files.values():
            _remove_quietly(temp)
            for suffix in sidecars:
                _remove_quietly(Path(str(temp) + suffix))


@contextlib.contextmanager
def _naming_os_errors(path: str | os.PathLike) -> Iterator[None]:
    """An OSError that names no file (a failed flush or close: a full disk) names ``path``: the
    analyst must learn which output could not be written."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


@contextlib.contextmanager
def atomic_file(
    final_path: str | os.PathLike,
    sidecars: tuple[str, ...] = RASTER_SIDECARS,
    outputs: AtomicOutputs | None = None,
) -> Iterator[Path]:
    """Yield a temporary path to write; on success move it (and sidecars) to ``final_path``.

    With ``outputs`` the file joins that group and is renamed when the group commits. An OSError
    inside the block that names no file names ``final_path``.
    """
    with _naming_os_errors(final_path):
        if outputs is not None:
            yield outputs.temporary(final_path, sidecars)
            return
        with AtomicOutputs() as group:
            yield group.temporary(final_path, sidecars)


@contextlib.contextmanager
def atomic_folder(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``final_dir``.

    ``final_dir`` must be absent or empty: an existing dataset is never overwritten. An OSError
    inside the block that names no file names ``final_dir``.
    """
    final = Path(final_dir)
    check_output_folder(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise RsdlError(
            f"The output folder '{final}' already exists and is not empty; choose a new folder "
            "or empty it first."
        )
    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TEMP_MARKER}", dir=final.parent))
    try:
        with _naming_os_errors(final):
            yield temp
        if final.exists():
            final.rmdir()
        os.replace(temp, final)
    except BaseException as error:
        release_failed_frames(error)
        raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files or folders of ours left in a folder (tests use it: the goal is none)."""
    return sorted(p for p in Path(folder).rglob(f"*{TEMP_MARKER}*"))
