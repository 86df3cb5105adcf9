"""qgis_io/area_mask.py: 1 inside a polygon layer's features on the processing grid, against
gdal.Rasterize into MEM, and the reader that makes the outside nodata."""

from __future__ import annotations

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import QgsCoordinateTransformContext, QgsFeature, QgsGeometry, QgsVectorLayer

from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io.area_mask import MaskedWindowReader, write_area_mask

X0, Y0 = 300000.0, 6000000.0


def _polygon(*offsets: tuple[float, float]) -> str:
    """A closed ring through (east, south) offsets in metres from the grid's top-left corner."""
    points = [f"{X0 + east} {Y0 - south}" for east, south in (*offsets, offsets[0])]
    return f"POLYGON(({', '.join(points)}))"


POLYGONS = [
    _polygon((2.2, 3.7), (30.6, 1.1), (25.3, 27.9)),
    # a bowtie: invalid, repaired into two triangles before it is burnt
    _polygon((5, 30), (35, 38), (35, 30), (5, 38)),
]


def _grid() -> RasterGrid:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    return RasterGrid(40, 45, (X0, 1.0, 0.0, Y0, 0.0, -1.0), srs.ExportToWkt())


def _layer(wkts: list[str]) -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:32631", "area", "memory")
    features = []
    for wkt in wkts:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    layer.updateExtents()
    return layer


def _oracle(wkts: list[str]) -> np.ndarray:
    grid = _grid()
    source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = source.CreateLayer("area", osr.SpatialReference(grid.crs_wkt), ogr.wkbPolygon)
    for wkt in wkts:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt).MakeValid())
        layer.CreateFeature(feature)
    target = gdal.GetDriverByName("MEM").Create("", grid.width, grid.height, 1, gdal.GDT_Byte)
    target.SetGeoTransform(grid.geotransform)
    assert gdal.RasterizeLayer(target, [1], layer, burn_values=[1]) == gdal.CE_None
    return target.ReadAsArray()


def test_the_mask_is_one_inside_the_polygons(tmp_path, qgis_app):
    path = write_area_mask(_layer(POLYGONS), _grid(), tmp_path / "area.tif", QgsCoordinateTransformContext())
    dataset = gdal.Open(str(path))
    mask = dataset.ReadAsArray()
    expected = _oracle(POLYGONS)
    assert expected[30:38].any()  # the repaired bowtie burns
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) == {0, 1}
    assert dataset.GetGeoTransform() == _grid().geotransform
    srs = osr.SpatialReference(dataset.GetProjection())
    assert srs.IsSame(osr.SpatialReference(_grid().crs_wkt))


class _Reader:
    """A window reader that records its calls and reads 5 everywhere."""

    bands = (1, 2)

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int]] = []

    def read(self, row, col, rows, cols):
        self.calls.append((row, col, rows, cols))
        return np.full((2, rows, cols), 5.0, np.float32), np.ones((rows, cols), dtype=bool)


def test_the_reader_masks_the_outside_and_skips_windows_without_area(tmp_path, qgis_app):
    path = write_area_mask(
        _layer(POLYGONS[:1]), _grid(), tmp_path / "area.tif", QgsCoordinateTransformContext()
    )
    inside = gdal.Open(str(path)).ReadAsArray() > 0
    wrapped = _Reader()
    reader = MaskedWindowReader(wrapped, path)
    data, valid = reader.read(0, 0, 20, 40)
    np.testing.assert_array_equal(valid, inside[:20])
    assert (data == 5).all() and wrapped.calls == [(0, 0, 20, 40)]

    data, valid = reader.read(35, 10, 10, 20)  # below the triangle: nothing inside
    assert not inside[35:45, 10:30].any()
    assert not valid.any() and data.shape == (2, 10, 20) and (data == 0).all()
    assert wrapped.calls == [(0, 0, 20, 40)]  # the raster was not read
