"""Hostile and odd inputs for the robustness suite, written by code (nothing binary is committed).

Every raster sits on (or near) one small UTM grid, ``X0``/``Y0`` at 0.5 m, so that the label
layers overlap it; each file is named after what is wrong with it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

EPSG = 32636
X0, Y0 = 500000.0, 4000000.0
PIXEL = 0.5
WIDTH, HEIGHT = 120, 100  # 60 m x 50 m
NODATA_ROWS, NODATA_COLS = 30, 40  # the top-left block that is nodata in the dtype rasters
GEOTRANSFORM = (X0, PIXEL, 0.0, Y0, 0.0, -PIXEL)
DTYPE_NODATA = {"Int16": -9999.0, "UInt16": 65535.0, "Float32": float("nan"), "Float64": float("nan")}


def _srs(epsg: int | None) -> osr.SpatialReference | None:
    if epsg is None:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_raster(
    path: Path,
    pixels: np.ndarray,
    geotransform: tuple[float, ...] = GEOTRANSFORM,
    epsg: int | None = EPSG,
    nodata: float | None = None,
    data_type: str = "Byte",
) -> Path:
    """An uncompressed striped GeoTIFF (so a truncated copy keeps a readable header)."""
    bands = pixels if pixels.ndim == 3 else pixels[None]
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path), bands.shape[2], bands.shape[1], bands.shape[0], gdal.GetDataTypeByName(data_type)
    )
    dataset.SetGeoTransform(geotransform)
    srs = _srs(epsg)
    if srs is not None:
        dataset.SetProjection(srs.ExportToWkt())
    for index, band_pixels in enumerate(bands, start=1):
        band = dataset.GetRasterBand(index)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(band_pixels)
    dataset = None
    return path


def _zero_size_tiff(path: Path, source: Path) -> Path:
    """GDAL cannot create a 0 x 0 raster, so a 1 x 1 GeoTIFF gets ImageWidth/ImageLength 0."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"II*\x00", "a little-endian classic TIFF is expected"
    (offset,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, offset)
    for entry in range(count):
        position = offset + 2 + 12 * entry
        tag, kind = struct.unpack_from("<HH", data, position)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<I" if kind == 4 else "<H", data, position + 8, 0)
    path.write_bytes(bytes(data))
    return path


def write_rasters(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    rgb = rng.integers(1, 255, (3, HEIGHT, WIDTH)).astype(np.uint8)
    paths = {"rgb": write_raster(folder / "rgb.tif", rgb)}
    paths["no_crs"] = write_raster(folder / "no_crs.tif", rgb, epsg=None)
    paths["rotated"] = write_raster(folder / "rotated.tif", rgb, (X0, PIXEL, 0.1, Y0, 0.1, -PIXEL))
    paths["geographic"] = folder / "geographic.tif"
    gdal.Warp(str(paths["geographic"]), str(paths["rgb"]), dstSRS="EPSG:4326")
    # One 60 m pixel over the whole label area.
    paths["one_pixel"] = write_raster(
        folder / "one_pixel.tif", rgb[:, :1, :1], (X0, 60.0, 0.0, Y0, 0.0, -60.0)
    )
    paths["zero_size"] = _zero_size_tiff(folder / "zero_size.tif", paths["one_pixel"])
    whole = paths["rgb"].read_bytes()
    paths["truncated"] = folder / "truncated.tif"
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    paths["truncated_header"] = folder / "truncated_header.tif"
    paths["truncated_header"].write_bytes(whole[:100])
    paths["one_band"] = write_raster(folder / "one_band.tif", rgb[0])
    paths["all_nodata"] = write_raster(folder / "all_nodata.tif", np.zeros_like(rgb), nodata=0)
    paths["small"] = write_raster(folder / "small.tif", rgb[:, :24, :24])
    for data_type, nodata in DTYPE_NODATA.items():
        values = rgb.astype(np.float64) * (1 if data_type == "Int16" else 3)
        values[:, :NODATA_ROWS, :NODATA_COLS] = nodata
        paths[data_type.lower()] = write_raster(
            folder / f"{data_type.lower()}_nodata.tif", values, nodata=nodata, data_type=data_type
        )
    return paths


def square(x: float, y: float, side: float) -> str:
    """A square polygon with its top-left corner at (x, y)."""
    return f"POLYGON(({x} {y}, {x + side} {y}, {x + side} {y - side}, {x} {y - side}, {x} {y}))"


def write_vector(
    path: Path,
    features: list[tuple[str | None, dict[str, object]]],
    geometry_type: int = ogr.wkbPolygon,
    epsg: int | None = EPSG,
    fields: dict[str, int] | None = None,
) -> Path:
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = datasource.CreateLayer(path.stem, _srs(epsg), geometry_type)
    for name, kind in (fields or {"cls": ogr.OFTInteger}).items():
        layer.CreateField(ogr.FieldDefn(name, kind))
    for wkt, attributes in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        for name, value in attributes.items():
            if value is not None:
                feature.SetField(name, value)
        if wkt:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    datasource = None
    return path


# A bow-tie (repairable into two triangles) and a polygon whose points lie on one line (no area).
def _polygon(*offsets: tuple[float, float]) -> str:
    """A closed polygon through points given as (east, south) metres from the grid's corner."""
    points = [*offsets, offsets[0]]
    return "POLYGON((" + ", ".join(f"{X0 + dx} {Y0 - dy}" for dx, dy in points) + "))"


BOW_TIE = _polygon((5, 5), (30, 30), (30, 5), (5, 30))
FLAT = _polygon((5, 5), (20, 20), (40, 40))
MIXED_SQUARE = square(X0 + 5, Y0 - 5, 10)  # 20 x 20 pixels
MIXED_LINE = f"LINESTRING({X0} {Y0 - 35.25}, {X0 + 60} {Y0 - 35.25})"


def write_vectors(folder: Path) -> dict[str, Path]:
    text = {"cls": ogr.OFTString}
    return {
        "labels": write_vector(
            folder / "labels.gpkg",
            [(square(X0 + 5, Y0 - 5, 20), {"cls": 1}), (square(X0 + 35, Y0 - 20, 20), {"cls": 2})],
        ),
        "empty": write_vector(folder / "empty.gpkg", []),
        "invalid": write_vector(folder / "invalid.gpkg", [(BOW_TIE, {"cls": 1}), (FLAT, {"cls": 2})]),
        "flat": write_vector(folder / "flat.gpkg", [(FLAT, {"cls": 1})]),
        "mixed": write_vector(
            folder / "mixed.gpkg",
            [
                (MIXED_SQUARE, {"cls": 1}),
                (MIXED_LINE, {"cls": 2}),
                (f"POINT({X0 + 45.25} {Y0 - 10.25})", {"cls": 3}),
            ],
            ogr.wkbUnknown,
        ),
        "blank_classes": write_vector(
            folder / "blank_classes.gpkg",
            [
                (square(X0 + 5, Y0 - 5, 10), {"cls": "forest"}),
                (square(X0 + 20, Y0 - 5, 10), {"cls": None}),
                (square(X0 + 35, Y0 - 5, 10), {"cls": ""}),
                (square(X0 + 5, Y0 - 20, 10), {"cls": "   "}),
                (square(X0 + 20, Y0 - 20, 10), {"cls": "n/a"}),
                (square(X0 + 35, Y0 - 20, 10), {"cls": " forest "}),
            ],
            fields=text,
        ),
        "all_null": write_vector(folder / "all_null.gpkg", [(square(X0 + 5, Y0 - 5, 10), {"cls": None})] * 2),
        # Sydney in degrees: nowhere near the UTM 36N grid once reprojected.
        "far": write_vector(folder / "far.gpkg", [(square(151.2, -33.8, 0.01), {"cls": 1})], epsg=4326),
        # UTM coordinates that claim to be degrees.
        "wrong_crs": write_vector(
            folder / "wrong_crs.gpkg", [(square(X0 + 5, Y0 - 5, 20), {"cls": 1})], epsg=4326
        ),
    }
