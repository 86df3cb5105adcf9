"""Label masks from sparse labels under a tiny GDAL cache: every background pixel stays background.

A regression test. The mask writer used to burn into a raw tiled GeoTIFF and copy it
with ``gdal.Translate(noData=ignore)``. From GDAL 3.10 the copy treats tiles that were never
written as holes and fills them with nodata, so background became the ignore value while the
statistics still counted it as background (a 4096^2 grid with one small polygon: 15.8 M of 16.8 M
pixels became 255). A tiny block cache makes GDAL flush and drop blocks early, the worst case.
The oracle is GDAL's own rasterizer into a MEM dataset, which holds every pixel in memory.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from tests.rasterize_cases import gdal_rasterize_oracle, read_band

SIZE = 3000  # 12 x 12 tiles of 256 px; one polygon touches one of them
CRS_EPSG = 32636
ORIGIN = (500000.0, 4000000.0)
PIXEL = 0.5


@pytest.fixture()
def tiny_gdal_cache():
    """A 1 MiB block cache for the test (restored after)."""
    previous = gdal.GetCacheMax()
    gdal.SetCacheMax(1 << 20)
    yield
    gdal.SetCacheMax(previous)


@pytest.fixture(scope="module")
def sparse_scene(tmp_path_factory):
    """A SIZE^2 three-band raster without nodata and one small building polygon near a corner."""
    folder = tmp_path_factory.mktemp("sparse")
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(CRS_EPSG)
    raster = folder / "scene.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(raster), SIZE, SIZE, 3, gdal.GDT_Byte, ["TILED=YES", "COMPRESS=DEFLATE"]
    )
    dataset.SetGeoTransform((ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL))
    dataset.SetProjection(srs.ExportToWkt())
    pixels = np.random.default_rng(0).integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8)
    for band in range(3):
        dataset.GetRasterBand(band + 1).WriteArray(pixels[band])
    dataset = None

    labels = folder / "buildings.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(labels))
    layer = source.CreateLayer("buildings", srs, ogr.wkbPolygon)
    x, y = ORIGIN[0] + 100 * PIXEL, ORIGIN[1] - 100 * PIXEL
    feature = ogr.Feature(layer.GetLayerDefn())
    size = 40 * PIXEL
    feature.SetGeometry(
        ogr.CreateGeometryFromWkt(
            f"POLYGON(({x} {y},{x + size} {y},{x + size} {y - size},{x} {y - size},{x} {y}))"
        )
    )
    layer.CreateFeature(feature)
    source = None
    return raster, labels


def test_rasterized_background_is_background(sparse_scene, tiny_gdal_cache, run_algorithm, tmp_path):
    raster, labels = sparse_scene
    output = tmp_path / "mask.tif"
    result = run_algorithm(
        "rsdl:rasterizelabels",
        {
            "INPUT": [str(labels)],
            "REFERENCE": str(raster),
            "BURN_VALUE": 1,
            "IGNORE_VALUE": 255,
            "OUTPUT": str(output),
        },
    )
    mask = read_band(output)
    expected = gdal_rasterize_oracle(labels, raster, burn=1)
    assert int((mask == 255).sum()) == 0, "background pixels became the ignore value"
    assert np.array_equal(mask, expected), f"{int((mask != expected).sum())} pixels differ from GDAL"
    reported = {row["value"]: row["pixels"] for row in json.loads(result["CLASS_STATISTICS"])}
    assert reported.get(0) == SIZE * SIZE - 1600 and reported.get(1) == 1600


def test_chip_masks_from_sparse_labels_hold_background(
    sparse_scene, tiny_gdal_cache, run_algorithm, tmp_path
):
    raster, labels = sparse_scene
    output = tmp_path / "chips"
    run_algorithm(
        "rsdl:exportchips",
        {
            "INPUT": str(raster),
            "LABELS": [str(labels)],
            "BURN_VALUE": 1,
            "IGNORE_VALUE": 255,
            "CHIP_SIZE": 256,
            "KEEP_EMPTY": True,
            "VAL_FRACTION": 0.0,
            "TEST_FRACTION": 0.0,
            "OUTPUT": str(output),
        },
    )
    masks = sorted(output.glob("*/masks/*.tif"))
    assert len(masks) == (-(-SIZE // 256)) ** 2
    values = np.concatenate([read_band(path).ravel() for path in masks])
    assert int((values == 255).sum()) == 0, "chip masks hold the ignore value where labels say background"
    assert int((values == 1).sum()) == 1600


def test_evaluate_with_vector_labels_equals_the_gdal_mask(
    sparse_scene, tiny_gdal_cache, run_algorithm, tmp_path
):
    raster, labels = sparse_scene
    # A "prediction": GDAL's mask of the labels, with one strip of wrong background far from them.
    truth = gdal_rasterize_oracle(labels, raster, burn=1)
    predicted = truth.copy()
    predicted[2000:2010, :] = 1
    source = gdal.Open(str(raster))
    prediction = tmp_path / "prediction.tif"
    target = gdal.GetDriverByName("GTiff").Create(str(prediction), SIZE, SIZE, 1, gdal.GDT_Byte)
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    target.GetRasterBand(1).WriteArray(predicted)
    target = None
    result = run_algorithm(
        "rsdl:evaluate",
        {
            "PREDICTION": str(prediction),
            "LABELS": [str(labels)],
            "BURN_VALUE": 1,
            "OUTPUT_HTML": str(tmp_path / "report.html"),
        },
    )
    metrics = json.loads(result["METRICS"])
    assert metrics["labelled"] == SIZE * SIZE  # nothing became "unknown"
    expected_accuracy = float((predicted == truth).mean())
    assert result["OVERALL_ACCURACY"] == pytest.approx(expected_accuracy, abs=1e-9)
