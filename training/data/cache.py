"""The training cache: expensive label work (masks, chip index, band statistics) done once.

An entry is a folder named by a hash of everything it depends on: each input file's absolute
path, size and modification time (for rasters, every file GDAL reads, e.g. a VRT's sources) and
the options that shape the result. Changing a file or an option gives a new key; an unchanged
input reuses the entry, across runs and across the train and validation datasets. Files are
written under a temporary name and renamed, so a crashed run never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Raised when cached results would differ for the same inputs: 2 = nodata in any band read.
CACHE_VERSION = 2
CACHE_ENV = "RSDL_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$RSDL_CACHE_DIR``, else ``$XDG_CACHE_HOME/rsdl/training``, else ``~/.cache/rsdl/training``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rsdl" / "training"


def file_fingerprint(path: str | os.PathLike) -> list[Any]:
    """[absolute path, size, mtime in ns] of a file (a missing file fails here, clearly)."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    return [str(resolved), status.st_size, status.st_mtime_ns]


def fingerprints(paths: Iterable[str | os.PathLike]) -> list[list[Any]]:
    return [file_fingerprint(path) for path in sorted({str(Path(p).resolve()) for p in paths})]


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def read_json(path: Path) -> dict[str, Any] | None:
    """The document at ``path``, or None when it is absent."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON document atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def temporary_path(path: Path) -> Path:
    """A sibling name to write ``path`` under before renaming it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
