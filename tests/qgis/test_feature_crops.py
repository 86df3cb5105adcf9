"""Crops around features (pytest-qgis): bounds reprojected as GDAL/OGR does, crops equal to the
raster's own pixels, and every feature without a crop counted under its reason."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from rsdl_qgis_plugin.core.errors import CancelledError
from rsdl_qgis_plugin.qgis_io.feature_crops import (
    NO_DATA,
    NO_GEOMETRY,
    OUTSIDE,
    FeatureCrops,
    bounds_in,
)
from rsdl_qgis_plugin.qgis_io.provider_reader import ProviderWindowReader
from tests.cancel_feedback import CancelAt
from tests.classify_cases import EPSG, PIXEL, X0, Y0, write_scene

UTM = QgsCoordinateReferenceSystem(f"EPSG:{EPSG}")
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


def _square(xmin: float, ymin: float, side: float) -> QgsGeometry:
    return QgsGeometry.fromWkt(
        f"POLYGON(({xmin} {ymin}, {xmin + side} {ymin}, {xmin + side} {ymin + side}, "
        f"{xmin} {ymin + side}, {xmin} {ymin}))"
    )


@pytest.fixture()
def scene(tmp_path, qgis_app):
    """The classify scene with its block (row 0, column 1) nodata: x X0+32..X0+64, y Y0-32..Y0."""
    return write_scene(tmp_path / "scene.tif", nodata_block=(0, 1))


def _crops(scene, source_crs=UTM, tile: int = 20) -> FeatureCrops:
    layer = QgsRasterLayer(str(scene), "scene", "gdal")
    assert layer.isValid()
    transform = QgsCoordinateTransform(source_crs, layer.crs(), QgsProject.instance().transformContext())
    reader = ProviderWindowReader(layer.dataProvider().clone(), None, (1, 2, 3))
    return FeatureCrops(reader, transform, layer.extent(), tile, lambda bounds: bounds)


def test_bounds_are_reprojected_as_ogr_does(qgis_app):
    wkt = "POLYGON((15.00 52.30, 15.01 52.30, 15.01 52.31, 15.00 52.31, 15.00 52.30))"
    transform = QgsCoordinateTransform(WGS84, UTM, QgsProject.instance().transformContext())
    bounds = bounds_in(QgsGeometry.fromWkt(wkt), transform)

    wgs84, utm = osr.SpatialReference(), osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    utm.ImportFromEPSG(EPSG)
    geometry = ogr.CreateGeometryFromWkt(wkt)
    geometry.Transform(osr.CoordinateTransformation(wgs84, utm))
    xmin, xmax, ymin, ymax = geometry.GetEnvelope()
    assert (bounds.xMinimum(), bounds.yMinimum(), bounds.xMaximum(), bounds.yMaximum()) == pytest.approx(
        (xmin, ymin, xmax, ymax), abs=1e-3
    )
    assert bounds.width() == pytest.approx(680, abs=15)  # 0.01 degree of longitude at 52.3 N


def test_missing_empty_and_untransformable_geometries_have_no_bounds(qgis_app):
    transform = QgsCoordinateTransform(WGS84, UTM, QgsProject.instance().transformContext())
    assert bounds_in(None, transform) is None
    assert bounds_in(QgsGeometry(), transform) is None
    assert bounds_in(QgsGeometry.fromWkt("POLYGON EMPTY"), transform) is None
    assert bounds_in(QgsGeometry.fromWkt("POINT(15 200)"), transform) is None  # latitude 200


def test_a_crop_is_the_rasters_own_pixels(scene):
    crops = _crops(scene)
    # 10 m x 10 m in block (0, 0), 5 m from the raster's corner: 20 x 20 pixels at 0.5 m.
    data = crops.crop(_square(X0 + 5, Y0 - 15, 10))
    image = gdal.Open(str(scene)).ReadAsArray()
    offset = int(5 / PIXEL)
    np.testing.assert_array_equal(data, image[:, offset : offset + 20, offset : offset + 20])
    assert not crops.missing


def test_the_square_function_makes_the_crop(scene):
    crops = _crops(scene, tile=10)
    crops.square = lambda bounds: (bounds[0] - 5, bounds[1] - 5, bounds[2] + 5, bounds[3] + 5)
    # A point grows to 10 m: read at 10 x 10 pixels of 1 m, half a raster pixel's neighbour each.
    data = crops.crop(QgsGeometry.fromWkt(f"POINT({X0 + 20} {Y0 - 20})"))
    image = gdal.Open(str(scene)).ReadAsArray()
    assert data.shape == (3, 10, 10)
    # Nearest-neighbour: each 1 m pixel takes one of the four 0.5 m pixels under it.
    block = image[:, 30:50, 30:50].reshape(3, 10, 2, 10, 2)
    under = [(data == block[:, :, a, :, b]).all(axis=0) for a in (0, 1) for b in (0, 1)]
    assert np.logical_or.reduce(under).all()


def test_features_without_a_crop_are_counted_by_reason(scene):
    crops = _crops(scene)
    assert crops.crop(_square(X0 + 40, Y0 - 25, 10)) is None  # in the nodata block
    assert crops.crop(_square(X0 + 500, Y0 - 15, 10)) is None  # east of the raster
    assert crops.crop(_square(X0 + 5, Y0 + 100, 10)) is None  # north of it
    assert crops.crop(QgsGeometry()) is None
    # Half over the nodata block still has data.
    assert crops.crop(_square(X0 + 27, Y0 - 15, 10)) is not None
    assert crops.missing == {NO_DATA: 1, OUTSIDE: 2, NO_GEOMETRY: 1}


def _source(geometries: list[QgsGeometry | None]) -> tuple[QgsVectorLayer, QgsProcessingFeatureSource]:
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:{EPSG}", "features", "memory")
    features = []
    for geometry in geometries:
        feature = QgsFeature(layer.fields())
        if geometry is not None:
            feature.setGeometry(geometry)
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)
    return layer, QgsProcessingFeatureSource(layer, QgsProcessingContext())


def test_read_yields_the_features_with_crops_and_reports_progress(scene):
    geometries = [
        _square(X0 + 5, Y0 - 15, 10),
        None,
        _square(X0 + 40, Y0 - 25, 10),
        _square(X0 + 70, Y0 - 50, 10),
        _square(X0 - 300, Y0, 10),
    ]
    layer, source = _source(geometries)
    ids = [feature.id() for feature in layer.getFeatures()]
    crops = _crops(scene)
    progress: list[float] = []
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(progress.append)
    read = list(crops.read(source, feedback, 90.0))
    assert [key for key, _ in read] == [ids[0], ids[3]]
    assert all(data.shape == (3, 20, 20) for _, data in read)
    assert crops.missing == {NO_GEOMETRY: 1, NO_DATA: 1, OUTSIDE: 1}
    # 90 % shared by five features (the first one's 0 % is no change, so no signal).
    assert progress == pytest.approx([18.0, 36.0, 54.0, 72.0])


def test_read_stops_on_cancel(scene):
    _, source = _source([_square(X0 + 5 + 12 * i, Y0 - 80, 10) for i in range(6)])
    crops = _crops(scene)
    read = []
    with pytest.raises(CancelledError):
        for item in crops.read(source, CancelAt(40.0), 100.0):
            read.append(item)
    # Progress 50 % comes with the fourth feature; the fifth finds the cancel.
    assert len(read) == 4
