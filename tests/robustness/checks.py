"""What every robustness case checks: inputs untouched, outputs complete or absent, no leftovers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osgeo import gdal, ogr

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from scripts.make_test_models import EVIL_MARKER

# Parameters that name files the algorithms write.
OUTPUT_PARAMETERS = ("OUTPUT", "CONFIDENCE", "OUTPUT_POLYGONS", "OUTPUT_HTML", "STATISTICS", "CHART")


@dataclass(frozen=True)
class Inputs:
    """Paths of the hostile inputs by name (``inputs['rgb']``) and of the test models."""

    folder: Path
    paths: dict[str, Path]
    models: dict[str, Path]

    def __getitem__(self, name: str) -> str:
        return str(self.paths[name])

    def model(self, name: str) -> str:
        return str(self.models[name])

    @property
    def models_folder(self) -> Path:
        return self.models["fcn_seg.onnx"].parent

    def folders(self) -> list[Path]:
        """Every folder whose files a run must leave as they are."""
        return sorted({self.folder, self.models_folder, *(p.parent for p in self.paths.values())})


def _files(folders: Iterable[Path]) -> Iterator[Path]:
    for folder in folders:
        yield from (path for path in folder.rglob("*") if path.is_file() or path.is_symlink())


def snapshot(folders: Iterable[Path]) -> dict[str, str]:
    """SHA-256 of every file under the folders (links by their target name, not followed)."""
    digests = {}
    for path in _files(folders):
        if path.is_symlink():
            digests[str(path)] = f"link to {path.readlink()}"
        else:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


class InputGuard:
    """Remembers the inputs' folders; ``assert_unchanged`` fails on any changed, new or lost file."""

    def __init__(self, inputs: Inputs) -> None:
        self.folders = inputs.folders()
        self.before = snapshot(self.folders)

    def assert_unchanged(self) -> None:
        after = snapshot(self.folders)
        changed = sorted(p for p in self.before.keys() & after.keys() if self.before[p] != after[p])
        assert not changed, f"inputs were modified: {changed}"
        assert not (after.keys() - self.before.keys()), (
            f"files appeared beside the inputs: {after.keys() - self.before.keys()}"
        )
        assert not (self.before.keys() - after.keys()), (
            f"inputs disappeared: {self.before.keys() - after.keys()}"
        )
        assert not any(Path(p).name == EVIL_MARKER for p in after), "a pickle was unpickled"


def output_paths(parameters: dict[str, Any]) -> list[Path]:
    """The files (or folders) a run's parameters ask it to write."""
    return [Path(str(parameters[name])) for name in OUTPUT_PARAMETERS if parameters.get(name)]


def assert_complete(path: Path) -> None:
    """The output reads back whole: every raster block, every feature, the whole document."""
    assert path.exists(), f"missing output {path}"
    if path.is_dir():  # an exported dataset
        document = json.loads((path / "dataset.json").read_text())
        assert document
        chips = sorted(path.rglob("*.tif"))
        assert chips, f"no chip in {path}"
        for chip in chips:
            assert_complete(chip)
        return
    suffix = path.suffix.lower()
    if suffix == ".tif":
        gdal.ErrorReset()
        dataset = gdal.Open(str(path))
        assert dataset is not None, f"GDAL cannot open {path}"
        for index in range(1, dataset.RasterCount + 1):
            dataset.GetRasterBand(index).Checksum()  # reads every block
        assert gdal.GetLastErrorType() < gdal.CE_Failure, f"{path}: {gdal.GetLastErrorMsg()}"
    elif suffix == ".gpkg":
        datasource = ogr.Open(str(path))
        assert datasource is not None and datasource.GetLayerCount() >= 1, f"OGR cannot open {path}"
        layer = datasource.GetLayer(0)
        assert sum(1 for _ in layer) == layer.GetFeatureCount()
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".html":
        assert path.read_text().rstrip().endswith("</html>")


def assert_outputs_complete(parameters: dict[str, Any], folder: Path) -> None:
    """Every output reads back whole, and no temporary of ours is left beside them."""
    for path in output_paths(parameters):
        assert_complete(path)
    assert leftover_temporaries(folder) == []


def assert_nothing_left(parameters: dict[str, Any], folder: Path) -> None:
    """No output, no temporary and nothing else in the run's output folder."""
    for path in output_paths(parameters):
        assert not path.exists(), f"{path} was left behind"
    if folder.exists():
        assert leftover_temporaries(folder) == []
        assert list(folder.iterdir()) == [], f"left in {folder}: {sorted(folder.iterdir())}"


def qgis_process_value(value: Any) -> Any:
    """A parameter value as qgis_process takes it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [qgis_process_value(item) for item in value]
    return str(value)


_LIBRARY_LOG = ("ERROR ", "Warning ", "<string>:", "DeprecationWarning", "Logged warning:", "qt.")


def qgis_process_message(stdout: str, stderr: str) -> str:
    """What qgis_process tells the user, without the log lines of GDAL, Qt and Python."""
    lines = (stdout + "\n" + stderr).splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(_LIBRARY_LOG))
