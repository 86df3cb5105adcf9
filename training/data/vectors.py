"""Vector label files read through pyogrio (GDAL/OGR): GeoJSON, GeoPackage and any other format
OGR reads.

A source is a path, optionally with a QGIS-style layer selector: ``labels.gpkg|layername=roads``.
A file given without a layer yields all its feature layers, in the file's own order (for a
GeoPackage the order of its ``gpkg_contents`` table: the order of "one class per layer").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from rsdl_qgis_plugin.core.errors import RsdlError

LAYER_SELECTOR = "|layername="
# Formats whose layers carry their own names (one class per layer); single-layer formats such as
# GeoJSON and shapefiles name their layer after the file.
_NAMED_LAYER_DRIVERS = ("GPKG",)
# What GDAL reports for a GeoPackage layer saved without a CRS (srs_id 0 and -1).
_UNDEFINED_CRS_NAMES = ("Undefined geographic SRS", "Undefined Cartesian SRS")


@dataclass
class VectorLayer:
    """One layer's features: geometries (None where empty) with their attributes, and the CRS."""

    name: str
    source: str
    crs: CRS
    geometries: list[BaseGeometry | None]
    attributes: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.geometries)


def split_source(source: str) -> tuple[Path, str | None]:
    """``path|layername=x`` -> (path, "x"); a plain path -> (path, None)."""
    path, _, layer = str(source).partition(LAYER_SELECTOR)
    return Path(path), (layer or None)


def _pyogrio() -> Any:
    # pyogrio imports pyproj when present (for GeoDataFrames only); Debian's pyproj warns in a
    # venv that it finds no PROJ data, which says nothing about reading labels.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pyogrio
        import pyogrio.raw
    return pyogrio


def read_layers(source: str) -> list[VectorLayer]:
    """The layer(s) a label source names; refuses missing files and unreadable formats clearly."""
    path, layer = split_source(source)
    if not path.is_file():
        raise RsdlError(f"Label file '{path}' does not exist.")
    pyogrio = _pyogrio()
    try:
        listed = pyogrio.list_layers(path)
    except pyogrio.errors.DataSourceError as error:
        raise RsdlError(f"Label file '{path}' cannot be read as a vector file: {error}") from None
    feature_layers = [str(name) for name, geometry_type in listed if geometry_type is not None]
    if layer is not None and layer not in feature_layers:
        raise RsdlError(f"Label file '{path}' has no feature layer '{layer}'.")
    chosen = [layer] if layer is not None else feature_layers
    if not chosen:
        raise RsdlError(f"Label file '{path}' holds no feature layer.")
    driver = pyogrio.read_info(path, layer=chosen[0])["driver"]
    named = driver in _NAMED_LAYER_DRIVERS or len(feature_layers) > 1
    return [_read_layer(pyogrio, path, name, named, layer) for name in chosen]


def _read_layer(pyogrio: Any, path: Path, layer: str, named: bool, selected: str | None) -> VectorLayer:
    if named:
        name, source = layer, f"{path}{LAYER_SELECTOR}{layer}"
    else:
        name, source = selected or path.stem, str(path)
    meta, _, wkb, field_data = pyogrio.raw.read(path, layer=layer, datetime_as_string=True)
    crs = meta.get("crs")
    if not crs or any(f'"{undefined}"' in crs for undefined in _UNDEFINED_CRS_NAMES):
        raise RsdlError(f"Label layer '{source}' has no CRS; assign one in QGIS and save it again.")
    geometries = [_geometry(blob) for blob in wkb]
    columns = [
        _column(values, np.dtype(dtype)) for values, dtype in zip(field_data, meta["dtypes"], strict=True)
    ]
    fields = [str(field) for field in meta["fields"]]
    if columns:
        attributes = [dict(zip(fields, row, strict=True)) for row in zip(*columns, strict=True)]
    else:
        attributes = [{} for _ in geometries]
    return VectorLayer(name, source, CRS.from_user_input(crs), geometries, attributes)


def _geometry(blob: bytes | None) -> BaseGeometry | None:
    if blob is None:
        return None
    geometry = shapely.from_wkb(blob)
    return None if geometry.is_empty else geometry


def _column(values: np.ndarray, dtype: np.dtype) -> list[Any]:
    """A field's values as Python values, None for NULL.

    pyogrio returns integer and boolean fields that hold NULLs as float64 with NaN; ``dtype`` (the
    field's own type) turns the others back into whole numbers or booleans."""
    plain = values.tolist()
    if values.dtype.kind != "f":
        return plain
    if dtype.kind in "iu":
        return [None if math.isnan(v) else int(v) for v in plain]
    if dtype.kind == "b":
        return [None if math.isnan(v) else bool(v) for v in plain]
    return [None if math.isnan(v) else v for v in plain]
