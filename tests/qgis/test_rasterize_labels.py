"""rsdl:rasterizelabels in QGIS (pytest-qgis): reference masks, GDAL oracles, rules and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests.cancel_feedback import CancelAt
from tests.rasterize_cases import (
    KAMPALA_TILES_WITH_BUILDINGS,
    REFERENCE_CASES,
    gdal_rasterize_oracle,
    read_band,
    read_category_names,
    valid_feature_count,
)

ALG = "rsdl:rasterizelabels"


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: c.name)
def test_pixel_identical_to_reference_masks(case, shared_data, run_algorithm, tmp_path):
    output = tmp_path / "mask.tif"
    result = run_algorithm(ALG, {**case.parameters(shared_data), "OUTPUT": str(output)})
    expected = read_band(shared_data / case.expected)
    actual = read_band(output)
    assert actual.shape == expected.shape
    assert np.array_equal(actual, expected), f"{int((actual != expected).sum())} pixels differ"
    # The reported counts are the mask's own histogram.
    reported = {row["value"]: row["pixels"] for row in json.loads(result["CLASS_STATISTICS"])}
    values, counts = np.unique(actual, return_counts=True)
    dataset = gdal.Open(str(output))  # keep the dataset alive while its band is used
    ignore = dataset.GetRasterBand(1).GetNoDataValue()
    assert {v: c for v, c in zip(values.tolist(), counts.tolist()) if v != ignore} == {
        v: c for v, c in reported.items() if c
    }
    if case.class_names:
        names = read_category_names(output)
        assert {v: names[v] for v in case.class_names} == case.class_names


def test_all_touched_equals_gdal(shared_data, run_algorithm, tmp_path):
    labels = shared_data / "solaris_atlanta/geotiff_labels.geojson"
    grid = shared_data / "solaris_atlanta/sample_geotiff.tif"
    output = tmp_path / "touched.tif"
    run_algorithm(
        ALG,
        {
            "INPUT": [str(labels)],
            "REFERENCE": str(grid),
            "BURN_VALUE": 1,
            "ALL_TOUCHED": True,
            "OUTPUT": str(output),
        },
    )
    actual = read_band(output)
    expected = gdal_rasterize_oracle(labels, grid, burn=1, all_touched=True)
    assert np.array_equal(actual, expected)
    # All-touched really differs from centre sampling here (the README counts 3,064 pixels).
    centre = gdal_rasterize_oracle(labels, grid, burn=1, all_touched=False)
    assert int((centre != expected).sum()) > 1000


def test_kampala_reprojected_invalid_labels_agree_with_gdal(shared_data, run_algorithm, tmp_path):
    labels = shared_data / "fair_kampala_buildings/buildings.geojson"
    _, invalid = valid_feature_count(labels)
    assert invalid >= 1, "the data set should hold an invalid polygon"
    tiles = sorted((shared_data / "fair_kampala_buildings/tiles").glob("*.tif"))
    assert len(tiles) == 126
    agree = pixels = repaired = labelled = 0
    for tile in tiles:
        output = tmp_path / f"{tile.stem}.tif"
        try:
            result = run_algorithm(
                ALG, {"INPUT": [str(labels)], "REFERENCE": str(tile), "BURN_VALUE": 1, "OUTPUT": str(output)}
            )
        except QgsProcessingException as error:
            assert "No label feature overlaps" in str(error)
            expected = gdal_rasterize_oracle(labels, tile, burn=1)
            assert not expected.any(), f"{tile.name}: GDAL burns labels where rsdl found none"
            continue
        repaired += int(result["REPAIRED_GEOMETRIES"])
        actual = read_band(output)
        expected = gdal_rasterize_oracle(labels, tile, burn=1)
        tile_agreement = float((actual == expected).mean())
        assert tile_agreement >= 0.995, f"{tile.name}: {tile_agreement:.4%}"
        agree += int((actual == expected).sum())
        pixels += actual.size
        labelled += int(actual.sum())
    assert pixels > 0 and labelled > 0
    assert agree / pixels >= 0.999, f"agreement {agree / pixels:.5%}"
    assert repaired >= 1, "the invalid polygon should have been repaired on some tile"
    for name in KAMPALA_TILES_WITH_BUILDINGS:
        assert read_band(tmp_path / name).any(), f"{name} should hold buildings"


def test_text_classes_buffers_and_styling(sample_scene, run_algorithm, tmp_path):
    output = tmp_path / "landcover.tif"
    statistics = tmp_path / "stats.json"
    chart = tmp_path / "chart.png"
    result = run_algorithm(
        ALG,
        {
            "INPUT": [
                f"{sample_scene / 'labels.gpkg'}|layername=landcover",
                f"{sample_scene / 'labels.gpkg'}|layername=roads",
            ],
            "FIELD": "class_name",
            "REFERENCE": str(sample_scene / "scene.tif"),
            "BUFFER_WIDTH": 6,
            "BUFFER_UNITS": 1,  # metres, while the labels are in EPSG:4326 and the grid in UTM
            "BUFFER_FIELD": "width_m",
            "OUTPUT": str(output),
            "STATISTICS": str(statistics),
            "CHART": str(chart),
        },
    )
    dataset = gdal.Open(str(output))
    band = dataset.GetRasterBand(1)
    mask = band.ReadAsArray()
    # Text classes get 1.. in alphabetical order; names and colours travel with the file.
    names = read_category_names(output)
    assert names[1:5] == ["building", "road", "vegetation", "water"]
    assert band.DataType == gdal.GDT_Byte
    assert band.GetNoDataValue() == 255
    assert band.GetColorTable().GetColorEntry(1)[:3] == (227, 26, 28)
    assert json.loads(dataset.GetMetadataItem("RSDL_CLASSES"))["2"]["name"] == "road"
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 4}
    assert int(result["REPAIRED_GEOMETRIES"]) == 1  # the scene's bow-tie building
    # Roads are buffered to their width_m: a 0.5 m grid gives a band 12 or 20 px wide.
    road_rows = (mask == 2).sum(axis=0)
    assert road_rows.max() >= 12
    assert (mask == 2).sum() > 4 * 512 * 6
    # Reports: JSON rows agree with the mask, the chart is a PNG, a .qml style sits beside.
    rows = json.loads(statistics.read_text())["classes"]
    assert {r["name"]: r["pixels"] for r in rows}["water"] == int((mask == 4).sum())
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    layer = QgsRasterLayer(str(output), "mask", "gdal")
    message, ok = layer.loadNamedStyle(str(output.with_suffix(".qml")))
    assert ok, message
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert {c.value: c.label for c in renderer.classes()}[3] == "vegetation"


def _memory_layer(
    crs: str | None, polygons: list[tuple[str, object]], field: str = "cls:integer"
) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Polygon?field={field}", "labels", "memory")
    layer.setCrs(QgsCoordinateReferenceSystem(crs) if crs else QgsCoordinateReferenceSystem())
    features = []
    for wkt, value in polygons:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttribute(0, value)
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


SQUARE_A = "POLYGON((0 0, 60 0, 60 60, 0 60, 0 0))"
SQUARE_B = "POLYGON((30 30, 90 30, 90 90, 30 90, 30 30))"
GRID = {"EXTENT": "0,100,0,100 [EPSG:32636]", "PIXEL_SIZE": 1.0}


@pytest.mark.parametrize(
    "rule, expected_overlap",
    [(0, 1), (1, 2), (2, 1)],
    ids=["last-feature", "highest", "lowest"],
)
def test_overlap_rules(rule, expected_overlap, run_algorithm, tmp_path):
    layer = _memory_layer("EPSG:32636", [(SQUARE_B, 2), (SQUARE_A, 1)])
    output = tmp_path / "overlap.tif"
    run_algorithm(
        ALG, {"INPUT": [layer], "FIELD": "cls", "OVERLAP_RULE": rule, "OUTPUT": str(output), **GRID}
    )
    mask = read_band(output)
    assert mask.shape == (100, 100)
    assert mask[50, 45] == expected_overlap  # inside both squares (row 50 is y = 49.5)
    assert mask[80, 10] == 1 and mask[20, 80] == 2 and mask[5, 5] == 0


def test_extent_grid_equals_reference_grid(shared_data, run_algorithm, tmp_path):
    grid = gdal.Open(str(shared_data / "solaris_atlanta/sample_geotiff.tif"))
    x0, dx, _, y0, _, dy = grid.GetGeoTransform()
    extent = f"{x0},{x0 + dx * grid.RasterXSize},{y0 + dy * grid.RasterYSize},{y0} [EPSG:32616]"
    labels = str(shared_data / "solaris_atlanta/geotiff_labels.geojson")
    run_algorithm(
        ALG,
        {
            "INPUT": [labels],
            "EXTENT": extent,
            "PIXEL_SIZE": dx,
            "BURN_VALUE": 255,
            "IGNORE_VALUE": 0,
            "UNLABELLED": 1,
            "OUTPUT": str(tmp_path / "a.tif"),
        },
    )
    expected = read_band(shared_data / "solaris_atlanta/sample_fp_mask_from_geojson.tif")
    assert np.array_equal(read_band(tmp_path / "a.tif"), expected)
    assert gdal.Open(str(tmp_path / "a.tif")).GetGeoTransform() == pytest.approx(grid.GetGeoTransform())


def test_reference_nodata_becomes_ignore(shared_data, run_algorithm, tmp_path):
    image = shared_data / "rasterio_rgb/RGB.byte.tif"
    output = tmp_path / "box.tif"
    run_algorithm(
        ALG,
        {
            "INPUT": [str(shared_data / "rasterio_rgb/box.shp")],
            "REFERENCE": str(image),
            "OUTPUT": str(output),
        },
    )
    mask = read_band(output)
    pixels = gdal.Open(str(image)).ReadAsArray()
    nodata = (pixels == 0).any(axis=0)  # nodata 0 in any band: the collar, and pixels inside
    assert nodata.sum() > 100_000
    assert (nodata & ~(pixels == 0).all(axis=0)).sum() > 500  # inside: one band 0, the others not
    assert np.array_equal(mask == 255, nodata)
    assert (mask[~nodata] == 0).sum() > 0 and (mask[~nodata] == 1).sum() > 0


def test_wide_class_values_use_uint16(run_algorithm, tmp_path):
    layer = _memory_layer("EPSG:32636", [(SQUARE_A, 300)])
    output = tmp_path / "wide.tif"
    run_algorithm(
        ALG, {"INPUT": [layer], "FIELD": "cls", "IGNORE_VALUE": 65535, "OUTPUT": str(output), **GRID}
    )
    dataset = gdal.Open(str(output))
    band = dataset.GetRasterBand(1)
    assert band.DataType == gdal.GDT_UInt16
    assert band.ReadAsArray().max() == 300


def _assert_refused(run_algorithm, parameters, tmp_path, message):
    output = tmp_path / "refused.tif"
    with pytest.raises(QgsProcessingException, match=message):
        run_algorithm(ALG, {**parameters, "OUTPUT": str(output)})
    assert not output.exists()
    assert leftover_temporaries(tmp_path) == []


def test_bad_inputs_are_refused_clearly(run_algorithm, tmp_path):
    good = _memory_layer("EPSG:32636", [(SQUARE_A, 1)])
    _assert_refused(
        run_algorithm, {"INPUT": [_memory_layer(None, [(SQUARE_A, 1)])], **GRID}, tmp_path, "has no CRS"
    )
    _assert_refused(run_algorithm, {"INPUT": [_memory_layer("EPSG:32636", [])], **GRID}, tmp_path, "is empty")
    far = _memory_layer("EPSG:32636", [("POLYGON((5000 5000, 5100 5000, 5100 5100, 5000 5000))", 1)])
    _assert_refused(run_algorithm, {"INPUT": [far], **GRID}, tmp_path, "No label feature overlaps")
    fraction = _memory_layer("EPSG:32636", [(SQUARE_A, 1.5)], field="cls:double")
    _assert_refused(run_algorithm, {"INPUT": [fraction], "FIELD": "cls", **GRID}, tmp_path, "whole")
    negative = _memory_layer("EPSG:32636", [(SQUARE_A, -3)])
    _assert_refused(run_algorithm, {"INPUT": [negative], "FIELD": "cls", **GRID}, tmp_path, "whole")
    _assert_refused(run_algorithm, {"INPUT": [good], "FIELD": "nope", **GRID}, tmp_path, "no field 'nope'")
    _assert_refused(run_algorithm, {"INPUT": [good], "BURN_VALUE": 255, **GRID}, tmp_path, "ignore")
    _assert_refused(run_algorithm, {"INPUT": [good]}, tmp_path, "REFERENCE")
    missing = tmp_path / "missing_folder" / "x.tif"
    with pytest.raises(QgsProcessingException, match="does not exist"):
        run_algorithm(ALG, {"INPUT": [good], "OUTPUT": str(missing), **GRID})


def test_text_field_with_nulls_skips_them(run_algorithm, tmp_path):
    layer = _memory_layer("EPSG:32636", [(SQUARE_A, "tree"), (SQUARE_B, None)], field="cls:string")
    feedback = QgsProcessingFeedback()
    output = tmp_path / "nulls.tif"
    run_algorithm(ALG, {"INPUT": [layer], "FIELD": "cls", "OUTPUT": str(output), **GRID}, feedback)
    mask = read_band(output)
    assert mask[80, 10] == 1 and mask[20, 80] == 0
    assert "Skipped 1 features whose class field is NULL" in feedback.textLog()


@pytest.mark.parametrize("threshold", [10, 50, 95])
def test_cancel_leaves_nothing(threshold, shared_data, run_algorithm, tmp_path):
    output = tmp_path / "cancelled.tif"
    parameters = {
        "INPUT": [str(shared_data / "rsgislib_aber_s2/aber_osgb_multi_polys.geojson")],
        "REFERENCE": str(shared_data / "rsgislib_aber_s2/sen2_20210527_aber_mosaic.vrt"),
        "FIELD": "val",
        "OUTPUT": str(output),
    }
    with pytest.raises(QgsProcessingException, match=r"[Cc]ancel"):
        run_algorithm(ALG, parameters, CancelAt(threshold))
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []
