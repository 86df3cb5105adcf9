"""Whole-area results of a batch prediction: one VRT of the class rasters, one GeoPackage of the objects.

* ``merge_vrt``: GDAL's ``gdalbuildvrt`` mosaics the per-raster outputs (no pixel is copied; the
  VRT names them relative to itself). The rasters must share a CRS, as gdalbuildvrt requires.
* ``merge_objects``: every raster's ``<name>_objects.gpkg`` into one layer with the source raster.
  An object cut by the edge between two rasters comes out of each as a piece touching that
  raster's edge; pieces of one class from different rasters that touch or overlap are dissolved
  into one object (the union; for boxes, the box around it), scored by the best piece, with the
  number of pieces in ``pieces``. ``at_raster_edge`` flags objects that still touch the edge of
  the rasters they came from: cut by the edge of the mosaic, or whose other part was not found.
  Objects away from the edges stream through; only edge pieces are held until the end.

Both outputs are written complete or absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import rasterio
import shapely
from shapely.geometry import MultiPolygon, box

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from training.object_files import LAYER

__all__ = ["merge_objects", "merge_vrt"]

RECTANGLE_FILL = 0.999  # a piece filling this much of its bounding box is a box


def merge_vrt(rasters: Sequence[Path], vrt: str | os.PathLike) -> str:
    """A VRT mosaic of ``rasters`` at ``vrt`` (gdalbuildvrt); returns the line to print."""
    vrt = Path(vrt)
    if not rasters:
        raise RsdlError(f"No raster was predicted, so there is nothing to mosaic into '{vrt}'.")
    program = shutil.which("gdalbuildvrt")
    if program is None:
        raise RsdlError(
            "--merge-vrt needs GDAL's gdalbuildvrt program; install GDAL's command-line tools "
            "(Debian: gdal-bin; conda: gdal)."
        )
    vrt.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(str(path) for path in rasters) + "\n")
    try:
        with atomic_file(vrt, sidecars=()) as temp:
            # The temporary VRT lies beside the final one, so its relative source paths stay right.
            run = subprocess.run(
                [program, "-q", "-overwrite", "-input_file_list", listing.name, str(temp)],
                capture_output=True,
                text=True,
                check=False,
            )
            problems = (run.stderr or "").strip()
            if run.returncode != 0 or not temp.exists():
                raise RsdlError(f"gdalbuildvrt could not mosaic the outputs into '{vrt}': {problems}")
            if "Warning" in problems:  # e.g. a raster in another CRS is left out
                raise RsdlError(f"gdalbuildvrt left rasters out of '{vrt}': {problems}")
    finally:
        os.unlink(listing.name)
    return f"Mosaic of {len(rasters)} raster(s): {vrt}"


class _EdgePieces:
    """Objects touching their raster's edge, held until every raster is read."""

    def __init__(self) -> None:
        self.geometries: list = []
        self.rows: list[tuple] = []  # (source, class_id, class_name, score, angle)
        self.footprints: list = []

    def add(self, geometry, row: tuple, footprint) -> None:
        self.geometries.append(geometry)
        self.rows.append(row)
        self.footprints.append(footprint)

    def groups(self, tolerance: float) -> list[list[int]]:
        """Pieces of one class from different rasters that touch or overlap, as index groups."""
        parent = list(range(len(self.geometries)))

        def root(index: int) -> int:
            while parent[index] != index:
                parent[index] = parent[parent[index]]
                index = parent[index]
            return index

        if self.geometries:
            tree = shapely.STRtree(self.geometries)
            left, right = tree.query(self.geometries, predicate="dwithin", distance=tolerance)
            for i, j in zip(left.tolist(), right.tolist()):
                if i < j and self.rows[i][1] == self.rows[j][1] and self.rows[i][0] != self.rows[j][0]:
                    parent[root(i)] = root(j)
        groups: dict[int, list[int]] = {}
        for index in range(len(self.geometries)):
            groups.setdefault(root(index), []).append(index)
        return list(groups.values())


def _is_box(geometry) -> bool:
    envelope = geometry.envelope
    return envelope.area > 0 and geometry.area >= RECTANGLE_FILL * envelope.area


def _dissolve(pieces: _EdgePieces, members: list[int], tolerance: float) -> tuple:
    """One object from its pieces: (geometry, fields...)."""
    geometries = [pieces.geometries[i] for i in members]
    union = shapely.union_all(geometries)
    if len(members) > 1 and all(_is_box(g) for g in geometries):
        union = union.envelope
    best = max(members, key=lambda i: pieces.rows[i][3])
    _source, class_id, class_name, score, angle = pieces.rows[best]
    sources = ";".join(dict.fromkeys(pieces.rows[i][0] for i in members))
    covered = shapely.union_all([pieces.footprints[i] for i in members])
    at_edge = union.distance(covered.boundary) <= tolerance
    geometry = union if isinstance(union, MultiPolygon) else MultiPolygon([union])
    return geometry, sources, class_id, class_name, score, union.area, angle, len(members), int(at_edge)


def _read_objects(path: Path) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    try:
        meta, _fids, geometry, fields = pyogrio.raw.read(path, layer=LAYER)
    except Exception as error:  # pyogrio raises several types for unreadable files
        raise RsdlError(f"The objects file '{path}' cannot be read: {error}") from None
    return meta, geometry, fields


def merge_objects(objects: Mapping[Path, Path], output: str | os.PathLike) -> str:
    """Every raster's objects (``{raster: its objects GeoPackage}``) into one GeoPackage at
    ``output``; returns the line to print."""
    output = Path(output)
    if not objects:
        raise RsdlError(f"No raster was predicted, so there is no object to merge into '{output}'.")
    output.parent.mkdir(parents=True, exist_ok=True)
    edge = _EdgePieces()
    crs, written, tolerance, created = None, 0, 0.0, False
    names = ["source", "class_id", "class_name", "score", "area", "angle", "pieces", "at_raster_edge"]
    with atomic_file(output, sidecars=()) as temp:
        for raster, path in objects.items():
            with rasterio.open(raster) as source:
                footprint = box(*source.bounds)
                pixel = max(abs(source.transform.a), abs(source.transform.e))
            tolerance = max(tolerance, pixel)
            meta, geometry, fields = _read_objects(path)
            if crs is None:
                crs = meta["crs"]
            elif meta["crs"] != crs:
                raise RsdlError(
                    f"The objects of '{raster}' are in another CRS than those before it; merge rasters "
                    "of one CRS (or reproject the rasters first)."
                )
            columns = dict(zip(meta["fields"], fields))
            shapes = shapely.from_wkb(geometry)
            at_edge = shapely.dwithin(shapes, footprint.exterior, pixel)
            angles = columns.get("angle", np.full(len(shapes), np.nan))
            keep = []
            for index, geometry_ in enumerate(shapes):
                row = (
                    str(raster),
                    int(columns["class_id"][index]),
                    str(columns["class_name"][index]),
                    float(columns["score"][index]),
                    float(angles[index]),
                )
                if at_edge[index]:
                    edge.add(geometry_, row, footprint)
                else:
                    keep.append((geometry_, *row[:4], float(columns["area"][index]), row[4], 1, 0))
            written += _append(temp, keep, names, crs, append=created)
            created = True
        merged = [_dissolve(edge, group, tolerance) for group in edge.groups(tolerance)]
        written += _append(temp, merged, names, crs, append=True)
    dissolved = sum(1 for row in merged if row[7] > 1)
    return (
        f"Objects of {len(objects)} raster(s): {written} in {output} ({dissolved} dissolved from pieces "
        f"cut by raster edges, {sum(row[8] for row in merged)} at an outer edge)"
    )


def _append(path: Path, rows: list[tuple], names: list[str], crs: str | None, append: bool) -> int:
    """Append ``rows`` (geometry, then ``names``' values) to the layer, or create it (``append``
    False) with them: an angle column whatever the model, so merged files share one schema."""
    if not rows and append:
        return 0
    columns = list(zip(*rows)) if rows else [()] * (len(names) + 1)
    types = [object, np.int32, object, np.float64, np.float64, np.float64, np.int32, np.int32]
    fields = [np.array(values, dtype=kind) for values, kind in zip(columns[1:], types)]
    pyogrio.raw.write(
        str(path),
        shapely.to_wkb(np.array(columns[0], dtype=object)),
        fields,
        names,
        layer=LAYER,
        driver="GPKG",
        geometry_type="MultiPolygon",
        crs=crs,
        append=append,
    )
    return len(rows)
