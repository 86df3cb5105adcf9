"""Scenes of painted objects for the detect -> evaluate tests (pytest-qgis and qgis_process): the
raster that tests/detector_models.py's detectors read, and reference layers made from the painted
boxes, as an analyst's hand-drawn reference would be."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import ogr, osr

from tests import detector_models as models

PIXEL = 0.5
X0, Y0 = 500000.0, 5000000.0  # models.write_scene's origin
EPSG = 32633
CLASS_COUNT = 3


@dataclass(frozen=True)
class ObjectScene:
    """A written scene: the raster, the painted objects, and the reference GeoPackage (layer
    ``reference``, field ``class_name`` = the model's class names, ``thing_<k>``) holding every
    painted box plus ``unpainted`` boxes where nothing is painted (missed by any detector)."""

    raster: Path
    painted: list[models.PaintedObject]
    reference: Path
    unpainted: int


def map_ring(box: tuple[float, float, float, float]) -> str:
    """A pixel box (x1, y1, x2, y2) of the scene as a WKT polygon in map coordinates."""
    x1, y1, x2, y2 = (X0 + box[0] * PIXEL, Y0 - box[1] * PIXEL, X0 + box[2] * PIXEL, Y0 - box[3] * PIXEL)
    return f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))"


def write_boxes(path: Path, boxes: list[tuple[tuple[float, float, float, float], str]]) -> Path:
    """A polygon GeoPackage (layer ``reference``) of pixel boxes with their class names."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = dataset.CreateLayer("reference", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    for box, name in boxes:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_name", name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(map_ring(box)))
        layer.CreateFeature(feature)
    dataset = None  # closes (commits) the file
    return path


def write_object_scene(folder: Path, size: int = 640, seed: int = 11, name: str = "objects") -> ObjectScene:
    """Rectangles of 24-60 px of three classes on a 160 px grid (so the detectors' 96 px windows
    never see two), and one reference box over empty ground."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = models.blank_scene(size, size)
    rng = np.random.default_rng(seed)
    painted = []
    centres = range(80, size - 40, 160)
    for index, (y, x) in enumerate((y, x) for y in centres for x in centres):
        if index == 1:
            continue  # left empty: the reference's unpainted box goes here
        height, width = (int(v) for v in rng.integers(24, 61, size=2))
        painted.append(
            models.paint_rectangle(
                scene, y - height // 2, x - width // 2, height, width, index % CLASS_COUNT, CLASS_COUNT
            )
        )
    raster = models.write_scene(folder / f"{name}.tif", scene, PIXEL)
    boxes = [(obj.box, f"thing_{obj.class_id}") for obj in painted]
    boxes.append(((220.0, 60.0, 260.0, 100.0), "thing_1"))  # centred on the empty grid cell (240, 80)
    reference = write_boxes(folder / f"{name}_reference.gpkg", boxes)
    return ObjectScene(raster, painted, reference, 1)


def read_features(path: Path) -> list[dict]:
    """The first layer's features: their fields and their geometry as WKT, in fid order."""
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    features = []
    for feature in sorted(layer, key=lambda f: f.GetFID()):
        item = {name: feature.GetField(name) for name in feature.keys()}  # noqa: SIM118 (an OGR feature is no dict)
        item["wkt"] = feature.GetGeometryRef().ExportToWkt()
        features.append(item)
    return features
