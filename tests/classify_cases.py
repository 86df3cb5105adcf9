"""A scene whose classes are known without the model: red, blue and purple blocks.

Shared by the pytest-qgis and the qgis_process suites of the classification algorithms. The
generated ``classifier.onnx`` calls a crop "damaged" when it is redder than blue on average and
"intact" when it is bluer, so the expected class of a tile or a footprint follows from the block
colours alone; purple blocks (as red as blue) have no confident class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

EPSG = 32633
PIXEL = 0.5  # metres; classifier.onnx works at 1 m, so tiles are read resampled
WIDTH, HEIGHT = 250, 180  # pixels: 125 m x 90 m, not a whole number of tiles
X0, Y0 = 500000.0, 5800000.0
BLOCK = 32.0  # metres: one classifier tile (32 px at 1 m)
PATTERN = (
    ("red", "blue", "red", "blue"),
    ("blue", "purple", "blue", "red"),
    ("red", "red", "blue", "blue"),
)
RGB = {"red": (190, 40, 40), "blue": (40, 40, 190), "purple": (115, 40, 115)}
EXPECTED_CLASS = {"red": "damaged", "blue": "intact", "purple": None}
EXTENT_AREA = WIDTH * PIXEL * HEIGHT * PIXEL
FOOTPRINT_SIDE = 10.0  # metres


def block_colour(x: float, y: float) -> str:
    """The colour of the block under the map point (x, y)."""
    return PATTERN[int((Y0 - y) // BLOCK)][int((x - X0) // BLOCK)]


def write_scene(path: Path, nodata_block: tuple[int, int] | None = None) -> Path:
    """The RGB GeoTIFF (EPSG:32633, 0.5 m) of ``PATTERN`` with pixel noise; ``nodata_block``
    (row, col) is filled with the declared nodata value 0."""
    rows = (np.arange(HEIGHT) * PIXEL // BLOCK).astype(int)
    cols = (np.arange(WIDTH) * PIXEL // BLOCK).astype(int)
    image = np.zeros((3, HEIGHT, WIDTH), dtype=np.float64)
    for r, line in enumerate(PATTERN):
        for c, colour in enumerate(line):
            mask = (rows[:, None] == r) & (cols[None, :] == c)
            image[:, mask] = np.array(RGB[colour], dtype=np.float64)[:, None]
    image += np.random.default_rng(7).normal(0.0, 15.0, image.shape)
    image = np.clip(image, 1, 255).astype(np.uint8)  # 0 stays free for nodata
    if nodata_block is not None:
        r, c = nodata_block
        image[:, (rows[:, None] == r) & (cols[None, :] == c)] = 0
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), WIDTH, HEIGHT, 3, gdal.GDT_Byte)
    dataset.SetGeoTransform((X0, PIXEL, 0.0, Y0, 0.0, -PIXEL))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset.SetProjection(srs.ExportToWkt())
    for band in range(3):
        dataset.GetRasterBand(band + 1).WriteArray(image[band])
        if nodata_block is not None:
            dataset.GetRasterBand(band + 1).SetNoDataValue(0)
    dataset = None
    return path


def _square(cx: float, cy: float, half: float) -> str:
    return (
        f"POLYGON(({cx - half} {cy - half}, {cx + half} {cy - half}, {cx + half} {cy + half}, "
        f"{cx - half} {cy + half}, {cx - half} {cy - half}))"
    )


def write_footprints(path: Path) -> dict[str, str | None]:
    """Footprints in EPSG:4326, one in the middle of every red or blue block, plus one outside
    the raster, one without geometry and one with an empty geometry. Fields: name, floors,
    area_m2 and class_name (an input field the output must keep). Returns name -> expected class.
    """
    utm, wgs84 = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(EPSG)
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs84 = osr.CoordinateTransformation(utm, wgs84)
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = datasource.CreateLayer("footprints", wgs84, ogr.wkbPolygon)
    for name, kind in (("name", ogr.OFTString), ("floors", ogr.OFTInteger), ("area_m2", ogr.OFTReal)):
        layer.CreateField(ogr.FieldDefn(name, kind))
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    expected: dict[str, str | None] = {}
    right, bottom = X0 + WIDTH * PIXEL, Y0 - HEIGHT * PIXEL

    def add(name: str, wkt: str | None, floors: int) -> None:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetField("floors", floors)
        feature.SetField("area_m2", FOOTPRINT_SIDE**2)
        feature.SetField("class_name", "unknown")
        if wkt is not None:
            geometry = ogr.CreateGeometryFromWkt(wkt)
            if not geometry.IsEmpty():
                geometry.Transform(to_wgs84)
            feature.SetGeometry(geometry)
        layer.CreateFeature(feature)

    for r, line in enumerate(PATTERN):
        for c, colour in enumerate(line):
            if EXPECTED_CLASS[colour] is None:
                continue
            cx = (X0 + c * BLOCK + min(X0 + (c + 1) * BLOCK, right)) / 2
            cy = (Y0 - r * BLOCK + max(Y0 - (r + 1) * BLOCK, bottom)) / 2
            add(f"b{r}{c}", _square(cx, cy, FOOTPRINT_SIDE / 2), r + c)
            expected[f"b{r}{c}"] = EXPECTED_CLASS[colour]
    for name, wkt in (
        ("outside", _square(right + 1000.0, Y0 - 45.0, FOOTPRINT_SIDE / 2)),
        ("no_geometry", None),
        ("empty", "POLYGON EMPTY"),
    ):
        add(name, wkt, 1)
        expected[name] = None
    datasource = None
    return expected


def read_features(path: Path) -> list[dict[str, Any]]:
    """Every feature of the first layer as its fields plus ``geometry`` (an OGR clone or None)."""
    datasource = ogr.Open(str(path))
    layer = datasource.GetLayer(0)
    features = []
    for feature in layer:
        values = feature.items()
        geometry = feature.GetGeometryRef()
        values["geometry"] = geometry.Clone() if geometry is not None else None
        features.append(values)
    return features


def expected_grid_count(length_px: float, tile: int, stride: int) -> int:
    """Tiles along an axis, written out independently of the plugin's formula."""
    starts = [0]
    while starts[-1] + tile < length_px and starts[-1] + stride < length_px:
        starts.append(starts[-1] + stride)
    return len(starts)


def union_area(features: list[dict[str, Any]]) -> float:
    union = ogr.Geometry(ogr.wkbMultiPolygon)
    for feature in features:
        union.AddGeometry(feature["geometry"])
    return union.UnionCascaded().GetArea()
