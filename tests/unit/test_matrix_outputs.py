"""scripts/matrix_outputs.py, the cross-version comparison of `make test`: it must see a difference."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from scripts.matrix_outputs import archive_outputs, compare_archives, path_arguments


def _raster(path: Path, pixels: np.ndarray) -> None:
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path),
        pixels.shape[1],
        pixels.shape[0],
        1,
        gdal.GDT_Float32 if pixels.dtype.kind == "f" else gdal.GDT_Byte,
    )
    dataset.SetGeoTransform((0, 1, 0, 10, 0, -1))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32636)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.GetRasterBand(1).WriteArray(pixels)
    dataset = None


def _vector(path: Path, features: list[tuple[str, float, str]]) -> None:
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("polygons", None, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
    for name, score, wkt in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetField("score", score)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    source = None


SQUARE = "POLYGON((0 0,1 0,1 1,0 1,0 0))"
OTHER = "POLYGON((2 2,3 2,3 3,2 3,2 2))"


def _archive(root: Path, classes: np.ndarray, confidence: np.ndarray, features) -> Path:
    root.mkdir()
    _raster(root / "classes.tif", classes)
    _raster(root / "confidence.tif", confidence)
    _vector(root / "polygons.gpkg", features)
    (root / "report.csv").write_text(f"class,iou\nbuilding,{confidence[0, 0]:.6f}\n")
    return root


def test_equal_outputs_compare_equal_whatever_the_feature_order(tmp_path):
    classes = np.arange(16, dtype=np.uint8).reshape(4, 4)
    confidence = np.full((4, 4), 0.5, np.float32)
    a = _archive(tmp_path / "a", classes, confidence, [("x", 1.0, SQUARE), ("y", 2.0, OTHER)])
    b = _archive(tmp_path / "b", classes, confidence + 1e-7, [("y", 2.0, OTHER), ("x", 1.0 + 1e-9, SQUARE)])
    result = compare_archives(a, b)
    assert result.differences == [] and result.compared == 4


def test_any_difference_is_reported(tmp_path):
    classes = np.zeros((4, 4), np.uint8)
    confidence = np.full((4, 4), 0.5, np.float32)
    a = _archive(tmp_path / "a", classes, confidence, [("x", 1.0, SQUARE)])
    changed_classes = classes.copy()
    changed_classes[2, 3] = 1
    b = _archive(tmp_path / "b", changed_classes, confidence + 1e-3, [("x", 1.5, SQUARE)])
    differences = sorted(line.split(":")[0] for line in compare_archives(a, b).differences)
    assert differences == ["classes.tif", "confidence.tif", "polygons.gpkg", "report.csv"]


def test_archive_keeps_outputs_not_inputs(tmp_path, monkeypatch):
    source, output = tmp_path / "input.tif", tmp_path / "out.tif"
    _raster(source, np.zeros((2, 2), np.uint8))  # written just before the run, as tests do
    args = ["run", "rsdl:segment", "--", f"INPUT={source}", f"OUTPUT={output}", "TILE_SIZE=256"]
    before = path_arguments(args, None)
    time.sleep(0.01)
    _raster(output, np.ones((2, 2), np.uint8))  # the "run"
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/x.py::test_y (call)")
    archive = tmp_path / "archive"
    archive_outputs(archive, args[1], before)
    assert sorted(p.name for p in (archive / "tests_x.py_test_y").iterdir()) == [
        "00-rsdl_segment-OUTPUT.tif",
        "run-00",
    ]
