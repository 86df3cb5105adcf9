"""Outputs that are complete or absent: write to a hidden temporary name, then rename.

A file output is written as ``.<name>.rsdl-tmp-<random><suffix>`` beside the final path. On
success it and its sidecars (``.aux.xml``, ``.qml``...) are renamed into place, the main file
last; on any exception, cancel included, every temporary file is removed and the final path is
left as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import RsdlError

TEMP_MARKER = ".rsdl-tmp-"
RASTER_SIDECARS = (".aux.xml",)


def check_output_folder(path: Path) -> None:
    """Refuse an output whose folder is missing or read-only, naming the folder."""
    folder = path.parent
    if not folder.is_dir():
        raise RsdlError(f"The output folder '{folder}' does not exist; create it or choose another.")
    if not os.access(folder, os.W_OK):
        raise RsdlError(f"The output folder '{folder}' is not writable; choose another folder.")


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary path in the same folder (so the final rename is atomic)."""
    return path.with_name(f".{path.stem}{TEMP_MARKER}{uuid.uuid4().hex[:8]}{path.suffix}")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def atomic_file(final_path: str | os.PathLike, sidecars: tuple[str, ...] = RASTER_SIDECARS) -> Iterator[Path]:
    """Yield a temporary path to write; on success move it (and sidecars) to ``final_path``."""
    final = Path(final_path)
    check_output_folder(final)
    temp = temporary_sibling(final)
    try:
        yield temp
        if not temp.exists():
            raise RsdlError(f"No output was produced for '{final}'.")
        for suffix in sidecars:
            stale = Path(str(final) + suffix)
            written = Path(str(temp) + suffix)
            if written.exists():
                os.replace(written, stale)
            else:
                _remove_quietly(stale)  # a sidecar of an older file would mislabel the new one
        os.replace(temp, final)
    finally:
        _remove_quietly(temp)
        for suffix in sidecars:
            _remove_quietly(Path(str(temp) + suffix))


@contextlib.contextmanager
def atomic_folder(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``final_dir``.

    ``final_dir`` must be absent or empty: an existing dataset is never overwritten.
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
        yield temp
        if final.exists():
            final.rmdir()
        os.replace(temp, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files or folders of ours left in a folder (tests use it: the goal is none)."""
    return sorted(p for p in Path(folder).rglob(f"*{TEMP_MARKER}*"))
