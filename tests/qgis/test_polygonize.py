"""Class polygons (pytest-qgis): polygonized from a small class raster, and written to a QGIS
sink as named multipolygons, stopping at the first feature the sink refuses."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsFeatureSink, QgsVectorLayer, QgsWkbTypes

from rsdl_qgis_plugin.qgis_io.polygonize import (
    ClassPolygon,
    add_class_polygons,
    class_polygon_fields,
    polygonize_classes,
)

SQUARE = "POLYGON((0 0, 4 0, 4 4, 0 4, 0 0))"
L_SHAPE = "POLYGON((10 0, 16 0, 16 2, 12 2, 12 6, 10 6, 10 0))"


def _polygon(wkt: str, class_id: int, confidence: float | None) -> ClassPolygon:
    geometry = ogr.CreateGeometryFromWkt(wkt)
    return ClassPolygon(bytes(geometry.ExportToWkb()), class_id, geometry.GetArea(), confidence)


def _layer() -> QgsVectorLayer:
    layer = QgsVectorLayer("MultiPolygon?crs=EPSG:32633", "polygons", "memory")
    provider = layer.dataProvider()
    assert provider.addAttributes(class_polygon_fields().toList())
    layer.updateFields()
    return layer


def test_polygons_become_named_multipolygon_features(qgis_app):
    fields = class_polygon_fields()
    assert fields.names() == ["class_id", "class_name", "mean_confidence", "area"]
    layer = _layer()
    polygons = [_polygon(SQUARE, 1, 0.75), _polygon(L_SHAPE, 7, None)]
    added = add_class_polygons(layer.dataProvider(), layer.fields(), polygons, {1: "building"})
    assert added == 2
    features = list(layer.getFeatures())
    assert [f.attributes() for f in features] == [
        [1, "building", 0.75, 16.0],
        [7, "7", None, 20.0],  # a value without a name is named by itself; no confidence is NULL
    ]
    for feature, wkt in zip(features, (SQUARE, L_SHAPE)):
        geometry = feature.geometry()
        assert geometry.wkbType() == QgsWkbTypes.MultiPolygon
        expected = ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkt(wkt))
        assert ogr.CreateGeometryFromWkb(bytes(geometry.asWkb())).Equals(expected)


class RefusesAfter(QgsFeatureSink):
    """A sink that takes ``limit`` features, then refuses (as a full disk would)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.features: list = []
        self.offered = 0

    def addFeature(self, feature, flags=None) -> bool:
        self.offered += 1
        if len(self.features) == self.limit:
            return False
        self.features.append(feature)
        return True

    def addFeatures(self, features, flags=None) -> bool:
        return all(self.addFeature(feature, flags) for feature in features)


def test_writing_stops_at_the_first_refused_feature(qgis_app):
    sink = RefusesAfter(1)
    polygons = [_polygon(SQUARE, 1, 0.5), _polygon(L_SHAPE, 2, 0.5), _polygon(SQUARE, 3, 0.5)]
    assert add_class_polygons(sink, class_polygon_fields(), polygons, {}) == 1
    assert sink.offered == 2  # the third is never offered
    assert sink.features[0].attribute("class_id") == 1


def test_polygonized_regions_carry_their_class_area_and_mean_confidence(tmp_path, qgis_app):
    classes = np.zeros((6, 8), dtype=np.uint8)
    classes[0:2, 0:3] = 1  # 6 px
    classes[4:6, 5:8] = 1  # 6 px, apart from the first
    classes[3:5, 0:2] = 2  # 4 px
    confidence = np.linspace(0.1, 0.9, 48, dtype=np.float32).reshape(6, 8)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    paths = []
    for name, array, data_type in (
        ("c.tif", classes, gdal.GDT_Byte),
        ("p.tif", confidence, gdal.GDT_Float32),
    ):
        dataset = gdal.GetDriverByName("GTiff").Create(str(tmp_path / name), 8, 6, 1, data_type)
        dataset.SetGeoTransform((500000.0, 2.0, 0.0, 5800000.0, 0.0, -2.0))  # 2 m pixels
        dataset.SetProjection(srs.ExportToWkt())
        dataset.GetRasterBand(1).WriteArray(array)
        dataset = None
        paths.append(tmp_path / name)
    polygons = polygonize_classes(paths[0], paths[1], skip_values={0})
    found = sorted((p.class_id, p.area, p.mean_confidence) for p in polygons)
    regions = (
        (1, np.pad(np.ones((2, 3), bool), ((0, 4), (0, 5)))),
        (1, np.pad(np.ones((2, 3), bool), ((4, 0), (5, 0)))),
        (2, np.pad(np.ones((2, 2), bool), ((3, 1), (0, 6)))),
    )
    expected = sorted(
        (value, float(mask.sum()) * 4.0, float(confidence[mask].mean())) for value, mask in regions
    )
    assert [row[:2] for row in found] == [row[:2] for row in expected]
    assert [row[2] for row in found] == pytest.approx([row[2] for row in expected], rel=1e-5)
    # Without confidences, and without regions under 20 m2 (class 2's is 16 m2).
    large = polygonize_classes(paths[0], None, skip_values={0}, min_area=20.0)
    assert [(p.class_id, p.area, p.mean_confidence) for p in large] == [(1, 24.0, None), (1, 24.0, None)]
