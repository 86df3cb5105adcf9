"""The manifest of a batch prediction: what was predicted, with what, into which files.

``rsdl_manifest.json`` in the output folder records, for each raster (by absolute path): the
model's SHA-256, the settings, the outputs (paths relative to the output folder) with their sizes
in bytes, when it finished, how long it took and on which worker, and in which run. A raster is
complete when its entry names this model and these settings and every output is there at its
recorded size; re-running the same command skips complete rasters and predicts the rest, so a
job whose nodes died resumes where it stopped. Failures are recorded too (and retried next run).

The file is rewritten atomically (a temporary file renamed over it), at most every
``SAVE_INTERVAL`` seconds and at the end, by the one process that runs the job, so a crash leaves
the last complete version.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file

__all__ = ["MANIFEST_NAME", "Fingerprint", "Manifest", "file_sha256"]

MANIFEST_NAME = "rsdl_manifest.json"
MANIFEST_VERSION = 1
SAVE_INTERVAL = 5.0  # seconds between rewrites while a job runs


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Fingerprint:
    """What makes two predictions of one raster the same: the model's bytes and the settings."""

    model: str
    model_sha256: str
    settings: dict[str, Any]


class Manifest:
    """The manifest of ``output_dir``: read at the start of a run, updated as rasters finish."""

    def __init__(self, output_dir: str | os.PathLike, command: str = "") -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / MANIFEST_NAME
        self.rasters: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self.runs: list[dict[str, Any]] = []
        if self.path.exists():
            self._read()
        self.run = {
            "id": uuid.uuid4().hex[:12],
            "started": _now(),
            "command": command,
            "predicted": 0,
            "skipped": 0,
            "failed": 0,
        }
        self.runs.append(self.run)
        self._saved = 0.0

    def _read(self) -> None:
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
            if content.get("version") != MANIFEST_VERSION:
                raise ValueError(f"version {content.get('version')!r}, expected {MANIFEST_VERSION}")
            self.rasters = dict(content["rasters"])
            self.failures = dict(content.get("failures", {}))
            self.runs = list(content.get("runs", []))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RsdlError(
                f"The manifest '{self.path}' cannot be read ({error}); move it away to start the job "
                "afresh (the outputs beside it are then predicted again)."
            ) from None

    def is_complete(self, raster: Path, fingerprint: Fingerprint) -> bool:
        """True when ``raster`` was predicted with this model and these settings and every
        output it wrote is still there at its recorded size."""
        entry = self.rasters.get(str(raster))
        if (
            entry is None
            or entry.get("model_sha256") != fingerprint.model_sha256
            or entry.get("settings") != fingerprint.settings
        ):
            return False
        for output in entry.get("outputs", []):
            path = self.output_dir / output["path"]
            if not path.is_file() or path.stat().st_size != output["bytes"]:
                return False
        return bool(entry.get("outputs"))

    def outputs(self, raster: Path) -> list[Path]:
        entry = self.rasters.get(str(raster), {})
        return [self.output_dir / output["path"] for output in entry.get("outputs", [])]

    def record_predicted(
        self,
        raster: Path,
        fingerprint: Fingerprint,
        outputs: tuple[Path, ...],
        seconds: float,
        worker: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        files = [
            {"path": os.path.relpath(path, self.output_dir), "bytes": Path(path).stat().st_size}
            for path in outputs
        ]
        self.rasters[str(raster)] = {
            "model": fingerprint.model,
            "model_sha256": fingerprint.model_sha256,
            "settings": fingerprint.settings,
            "outputs": files,
            "finished": _now(),
            "seconds": round(seconds, 3),
            "worker": worker,
            "predicted_in_run": self.run["id"],
            "checked_in_run": self.run["id"],
            **(extra or {}),
        }
        self.failures.pop(str(raster), None)
        self.run["predicted"] += 1
        self._save_now_and_then()

    def record_skipped(self, raster: Path) -> None:
        self.rasters[str(raster)]["checked_in_run"] = self.run["id"]
        self.run["skipped"] += 1

    def record_failed(self, raster: Path, error: str) -> None:
        self.failures[str(raster)] = {"error": error, "run": self.run["id"], "when": _now()}
        self.run["failed"] += 1
        self._save_now_and_then()

    def _save_now_and_then(self) -> None:
        if time.monotonic() - self._saved >= SAVE_INTERVAL:
            self.save()

    def save(self, finished: bool = False) -> None:
        """Rewrite the file atomically."""
        if finished:
            self.run["finished"] = _now()
        content = {
            "version": MANIFEST_VERSION,
            "rasters": self.rasters,
            "failures": self.failures,
            "runs": self.runs,
        }
        with atomic_file(self.path, sidecars=()) as temp:
            temp.write_text(json.dumps(content, indent=1, sort_keys=True), encoding="utf-8")
        self._saved = time.monotonic()
