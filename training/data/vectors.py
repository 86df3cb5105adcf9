"""Vector label files read without GDAL's Python bindings: GeoJSON and GeoPackage natively,
other formats through pyogrio when it is installed.

A source is a path, optionally with a QGIS-style layer selector: ``labels.gpkg|layername=roads``.
A GeoPackage given without a layer yields all its feature layers, in the order of its
``gpkg_contents`` table (the order of "one class per layer").
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from rasterio.crs import CRS
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from rsdl_qgis_plugin.core.errors import RsdlError

LAYER_SELECTOR = "|layername="
# GeoPackage binary header: envelope sizes by the 3-bit envelope indicator of the flags byte.
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


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


def read_layers(source: str) -> list[VectorLayer]:
    """The layer(s) a label source names; refuses missing files and unreadable formats clearly."""
    path, layer = split_source(source)
    if not path.is_file():
        raise RsdlError(f"Label file '{path}' does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        return [_read_geojson(path)]
    if suffix == ".gpkg":
        return _read_geopackage(path, layer)
    return [_read_with_pyogrio(path, layer)]


# -- GeoJSON ---------------------------------------------------------------------------------


def _geojson_crs(document: dict[str, Any]) -> CRS:
    """The legacy ``crs`` member when present, else WGS 84 (RFC 7946)."""
    name = (document.get("crs") or {}).get("properties", {}).get("name")
    if not name:
        return CRS.from_epsg(4326)
    if name.upper().endswith("CRS84"):
        return CRS.from_epsg(4326)
    return CRS.from_user_input(name)


def _read_geojson(path: Path) -> VectorLayer:
    document = json.loads(path.read_text(encoding="utf-8"))
    features = document.get("features", []) if document.get("type") == "FeatureCollection" else [document]
    geometries, attributes = [], []
    for feature in features:
        geometry = feature.get("geometry")
        geometries.append(shape(geometry) if geometry else None)
        attributes.append(dict(feature.get("properties") or {}))
    return VectorLayer(path.stem, str(path), _geojson_crs(document), geometries, attributes)


# -- GeoPackage ------------------------------------------------------------------------------


def gpkg_geometry(blob: bytes | None) -> BaseGeometry | None:
    """A GeoPackage geometry blob (header + WKB) as a shapely geometry; None when empty."""
    if blob is None:
        return None
    if blob[:2] != b"GP":
        raise RsdlError("Not a GeoPackage geometry blob (missing the 'GP' magic).")
    flags = blob[3]
    if flags & 0b10000:  # the empty-geometry flag
        return None
    envelope = _ENVELOPE_BYTES.get((flags >> 1) & 0b111)
    if envelope is None:
        raise RsdlError(f"GeoPackage geometry with an unknown envelope code in flags {flags:#04x}.")
    geometry = shapely.from_wkb(bytes(blob[8 + envelope :]))
    return None if geometry.is_empty else geometry


def _gpkg_crs(connection: sqlite3.Connection, srs_id: int) -> CRS:
    row = connection.execute(
        "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id=?",
        (srs_id,),
    ).fetchone()
    if row is None or srs_id in (0, -1):
        raise RsdlError(f"GeoPackage layer has no CRS (srs_id {srs_id}); assign one in QGIS and save again.")
    organization, code, definition = row
    if str(organization).upper() == "EPSG":
        return CRS.from_epsg(int(code))
    return CRS.from_wkt(definition)


def _read_geopackage(path: Path, layer: str | None) -> list[VectorLayer]:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        tables = connection.execute(
            "SELECT c.table_name, g.column_name, g.srs_id FROM gpkg_contents c "
            "JOIN gpkg_geometry_columns g ON g.table_name = c.table_name "
            "WHERE c.data_type = 'features' ORDER BY c.rowid"
        ).fetchall()
        if layer is not None:
            tables = [t for t in tables if t[0] == layer]
            if not tables:
                raise RsdlError(f"GeoPackage '{path}' has no feature layer '{layer}'.")
        if not tables:
            raise RsdlError(f"GeoPackage '{path}' holds no feature layer.")
        return [_read_gpkg_table(connection, path, *table) for table in tables]


def _read_gpkg_table(
    connection: sqlite3.Connection, path: Path, table: str, column: str, srs_id: int
) -> VectorLayer:
    cursor = connection.execute(f'SELECT * FROM "{table}"')  # names come from the file's catalogue
    names = [description[0] for description in cursor.description]
    geometry_at = names.index(column)
    geometries, attributes = [], []
    for row in cursor:
        geometries.append(gpkg_geometry(row[geometry_at]))
        attributes.append(
            {name: value for i, (name, value) in enumerate(zip(names, row)) if i != geometry_at}
        )
    return VectorLayer(
        table, f"{path}{LAYER_SELECTOR}{table}", _gpkg_crs(connection, srs_id), geometries, attributes
    )


# -- anything else ---------------------------------------------------------------------------


def _read_with_pyogrio(path: Path, layer: str | None) -> VectorLayer:
    try:
        import pyogrio  # optional: only for formats other than GeoJSON and GeoPackage
    except ImportError:
        raise RsdlError(
            f"Label file '{path}': rsdl training reads GeoJSON and GeoPackage; for other formats "
            "install pyogrio (pip install pyogrio) or save the labels as a GeoPackage."
        ) from None
    meta, _, wkb, field_data = pyogrio.raw.read(path, layer=layer)
    fields = list(meta["fields"])
    geometries = [None if g is None else shapely.from_wkb(g) for g in wkb]
    attributes = [
        {name: _plain(field_data[j][i]) for j, name in enumerate(fields)} for i in range(len(geometries))
    ]
    if not meta.get("crs"):
        raise RsdlError(f"Label file '{path}' has no CRS; assign one and save it again.")
    return VectorLayer(
        layer or path.stem, str(path), CRS.from_user_input(meta["crs"]), geometries, attributes
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
