"""Outputs of the qgis_process runs, kept per QGIS version and compared across versions.

With ``RSDL_OUTPUT_ARCHIVE=DIR`` set, ``QgisProcess`` copies what every successful
``qgis_process run`` wrote (the files and folders its ``KEY=path`` arguments name that changed
during the run) to ``DIR/<test>/<n>-<algorithm>-<KEY><suffix>``. ``make test`` gives each version
of the matrix its own ``DIR`` and then compares them:

    python scripts/matrix_outputs.py compare .matrix-outputs/here .matrix-outputs/3.40 ...

Rasters must have the same grid, CRS, types and nodata; integer pixels must be identical and
float pixels equal within ``FLOAT_TOLERANCE`` (onnxruntime, numpy and GDAL builds differ between
Debian releases, so float sums may differ in the last bits). Vector layers must have the same
features (in any order: GDAL releases polygonize in different orders), the same attribute values
(floats within the same tolerance) and geometries equal up to ``AREA_TOLERANCE`` of symmetric
difference. CSV cells compare the same way.
Other files (HTML, PNG, JSON, styles) are listed but not compared.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ARCHIVE_VARIABLE = "RSDL_OUTPUT_ARCHIVE"
FLOAT_TOLERANCE = 1e-5  # absolute, on model confidences, probabilities, areas and metrics
AREA_TOLERANCE = 1e-6  # map units squared of symmetric difference between two geometries
RASTERS = {".tif", ".tiff"}
VECTORS = {".gpkg", ".geojson", ".shp"}
TABLES = {".csv"}


def path_arguments(args: Sequence[str], cwd: Path | None) -> dict[str, tuple[Path, float | None]]:
    """``KEY -> (path, time of its newest change or None)`` for the ``KEY=path`` arguments of
    ``qgis_process run ALG -- ...``: taken before the run, so that afterwards only what the run
    created or changed counts as its output."""
    paths = {}
    for argument in args[2:]:
        key, separator, value = argument.partition("=")
        if separator and value and "|" not in value:
            path = Path(value) if os.path.isabs(value) else (cwd or Path.cwd()) / value
            paths[key] = (path, _newest_change(path) if path.exists() else None)
    return paths


def archive_outputs(archive: Path, algorithm: str, before: dict[str, tuple[Path, float | None]]) -> None:
    """Copy what one finished run wrote (``before``: ``path_arguments`` taken before it) into
    ``archive``."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "no-test").rsplit(" ", 1)[0]
    folder = archive / re.sub(r"[^\w.-]+", "_", test)
    folder.mkdir(parents=True, exist_ok=True)
    run_index = sum(1 for _ in folder.glob("run-*"))
    (folder / f"run-{run_index:02d}").touch()
    name = re.sub(r"[^\w]+", "_", algorithm)
    for key, (path, changed) in before.items():
        if not path.exists() or (changed is not None and _newest_change(path) <= changed):
            continue  # an input, or not a path
        target = folder / f"{run_index:02d}-{name}-{key}{path.suffix if path.is_file() else ''}"
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)


def _newest_change(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    return max((item.stat().st_mtime for item in path.rglob("*") if item.is_file()), default=0.0)


@dataclass
class Comparison:
    compared: int = 0
    not_compared: int = 0
    differences: list[str] = field(default_factory=list)
    only_in_one: list[str] = field(default_factory=list)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        if math.isnan(float(a)) and math.isnan(float(b)):
            return True
        return abs(float(a) - float(b)) <= FLOAT_TOLERANCE
    return a == b


def compare_rasters(first: Path, second: Path) -> str | None:
    """None when equal; else what differs."""
    import numpy as np
    from osgeo import gdal, osr

    a, b = gdal.Open(str(first)), gdal.Open(str(second))
    if (a.RasterXSize, a.RasterYSize, a.RasterCount) != (b.RasterXSize, b.RasterYSize, b.RasterCount):
        return "size or band count"
    if not np.allclose(a.GetGeoTransform(), b.GetGeoTransform(), rtol=0, atol=1e-9):
        return "geotransform"
    srs_a, srs_b = osr.SpatialReference(wkt=a.GetProjection()), osr.SpatialReference(wkt=b.GetProjection())
    if bool(a.GetProjection()) != bool(b.GetProjection()) or (a.GetProjection() and not srs_a.IsSame(srs_b)):
        return "CRS"
    for index in range(1, a.RasterCount + 1):
        band_a, band_b = a.GetRasterBand(index), b.GetRasterBand(index)
        if band_a.DataType != band_b.DataType or not _close(band_a.GetNoDataValue(), band_b.GetNoDataValue()):
            return f"band {index} type or nodata"
        pixels_a, pixels_b = band_a.ReadAsArray(), band_b.ReadAsArray()
        if pixels_a.dtype.kind == "f":
            if not np.allclose(pixels_a, pixels_b, rtol=0, atol=FLOAT_TOLERANCE, equal_nan=True):
                worst = float(np.nanmax(np.abs(pixels_a.astype(np.float64) - pixels_b)))
                return f"band {index}: float pixels differ by up to {worst:.3g}"
        elif not np.array_equal(pixels_a, pixels_b):
            return f"band {index}: {int((pixels_a != pixels_b).sum())} pixels differ"
    return None


def compare_vectors(first: Path, second: Path) -> str | None:
    from osgeo import gdal

    a, b = gdal.OpenEx(str(first), gdal.OF_VECTOR), gdal.OpenEx(str(second), gdal.OF_VECTOR)
    names_a = sorted(a.GetLayer(i).GetName() for i in range(a.GetLayerCount()))
    names_b = sorted(b.GetLayer(i).GetName() for i in range(b.GetLayerCount()))
    if names_a != names_b:
        return f"layers {names_a} vs {names_b}"
    for name in names_a:
        layer_a, layer_b = a.GetLayerByName(name), b.GetLayerByName(name)
        if layer_a.GetFeatureCount() != layer_b.GetFeatureCount():
            return f"{name}: {layer_a.GetFeatureCount()} vs {layer_b.GetFeatureCount()} features"
        for feature_a, feature_b in zip(_in_order(layer_a), _in_order(layer_b)):
            items_a, items_b = feature_a.items(), feature_b.items()
            if list(items_a) != list(items_b) or not all(_close(items_a[k], items_b[k]) for k in items_a):
                return f"{name}: attributes of feature {feature_a.GetFID()}"
            geometry_a, geometry_b = feature_a.GetGeometryRef(), feature_b.GetGeometryRef()
            if (geometry_a is None) != (geometry_b is None):
                return f"{name}: geometry of feature {feature_a.GetFID()}"
            if geometry_a is not None and not geometry_a.Equals(geometry_b):
                difference = geometry_a.SymDifference(geometry_b)
                if difference is None or difference.GetArea() > AREA_TOLERANCE:
                    return f"{name}: geometry of feature {feature_a.GetFID()}"
    return None


def _in_order(layer) -> list:
    """The layer's features in a canonical order: GDAL releases polygonize in different orders."""

    def key(feature) -> tuple:
        geometry = feature.GetGeometryRef()
        envelope = tuple(round(v, 4) for v in geometry.GetEnvelope()) if geometry is not None else ()
        values = tuple(round(v, 4) if isinstance(v, float) else str(v) for v in feature.items().values())
        return (values, envelope)

    return sorted(layer, key=key)


def compare_tables(first: Path, second: Path) -> str | None:
    def cells(path: Path) -> list[list[object]]:
        with path.open(newline="", encoding="utf-8") as stream:
            return [[_number(cell) for cell in row] for row in csv.reader(stream)]

    rows_a, rows_b = cells(first), cells(second)
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} vs {len(rows_b)} rows"
    for number, (row_a, row_b) in enumerate(zip(rows_a, rows_b)):
        if len(row_a) != len(row_b) or not all(_close(x, y) for x, y in zip(row_a, row_b)):
            return f"row {number}"
    return None


def _number(cell: str) -> object:
    try:
        return float(cell)
    except ValueError:
        return cell


COMPARERS = {**dict.fromkeys(RASTERS, compare_rasters), **dict.fromkeys(VECTORS, compare_vectors)}
COMPARERS.update(dict.fromkeys(TABLES, compare_tables))


def compare_archives(reference: Path, other: Path) -> Comparison:
    """Compare every output file of ``other`` with the same one in ``reference``."""
    comparison = Comparison()
    files_a = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file()}
    files_b = {p.relative_to(other) for p in other.rglob("*") if p.is_file()}
    comparison.only_in_one = sorted(str(p) for p in files_a ^ files_b if not p.name.startswith("run-"))
    for relative in sorted(files_a & files_b):
        comparer = COMPARERS.get(relative.suffix.lower())
        if relative.name.startswith("run-"):
            continue
        if comparer is None:
            comparison.not_compared += 1
            continue
        comparison.compared += 1
        try:
            problem = comparer(reference / relative, other / relative)
        except Exception as error:  # an unreadable output is a difference too
            problem = f"unreadable: {error}"
        if problem:
            comparison.differences.append(f"{relative}: {problem}")
    return comparison


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="compare the archives of several QGIS versions")
    compare.add_argument("reference", type=Path, help="the archive the others are compared with")
    compare.add_argument("others", type=Path, nargs="+")
    args = parser.parse_args(argv)
    started, status = time.time(), 0
    print(f"Outputs compared with {args.reference} (floats within {FLOAT_TOLERANCE:g}):")
    for other in args.others:
        if not other.is_dir() or not args.reference.is_dir():
            print(f"  {other}: missing archive (did its test run happen?)")
            status = 1
            continue
        result = compare_archives(args.reference, other)
        print(
            f"  {other}: {result.compared} files compared, {len(result.differences)} differ, "
            f"{result.not_compared} not comparable (HTML, PNG, JSON...), "
            f"{len(result.only_in_one)} in one archive only (tests skipped on one version)"
        )
        for line in result.differences:
            print(f"    DIFFERS {line}")
        for line in result.only_in_one[:20]:
            print(f"    only in one: {line}")
        if result.differences or not result.compared:
            status = 1
    print(f"({time.time() - started:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
