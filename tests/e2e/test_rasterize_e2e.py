"""rsdl:rasterizelabels through the real qgis_process binary, as a shell user runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests.rasterize_cases import (
    KAMPALA_TILES_WITH_BUILDINGS,
    REFERENCE_CASES,
    gdal_rasterize_oracle,
    read_band,
)

pytestmark = pytest.mark.qgis_process


def test_list_shows_rsdl_algorithms(qgis_process):
    listing = qgis_process.run("list").stdout
    assert "rsdl:rasterizelabels" in listing
    assert "rsdl:exportchips" in listing


def test_help_documents_every_parameter(qgis_process):
    text = qgis_process.run("help", "rsdl:rasterizelabels").stdout
    for name in ("INPUT", "FIELD", "REFERENCE", "ALL_TOUCHED", "OUTPUT", "IGNORE_VALUE", "BUFFER_WIDTH"):
        assert name in text


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: c.name)
def test_reference_masks_through_qgis_process(case, shared_data, qgis_process, tmp_path):
    output = tmp_path / "mask.tif"
    result = qgis_process.run_algorithm(
        "rsdl:rasterizelabels", {**case.parameters(shared_data), "OUTPUT": str(output)}
    )
    assert result["results"]["OUTPUT"] == str(output)
    assert np.array_equal(read_band(output), read_band(shared_data / case.expected))
    assert json.loads(result["results"]["CLASS_STATISTICS"])


def test_all_touched_through_qgis_process(shared_data, qgis_process, tmp_path):
    labels = shared_data / "solaris_atlanta/geotiff_labels.geojson"
    grid = shared_data / "solaris_atlanta/sample_geotiff.tif"
    output = tmp_path / "touched.tif"
    qgis_process.run_algorithm(
        "rsdl:rasterizelabels",
        {
            "INPUT": str(labels),
            "REFERENCE": str(grid),
            "BURN_VALUE": 1,
            "ALL_TOUCHED": "true",
            "OUTPUT": str(output),
        },
    )
    assert np.array_equal(read_band(output), gdal_rasterize_oracle(labels, grid, 1, all_touched=True))


@pytest.mark.parametrize("tile", KAMPALA_TILES_WITH_BUILDINGS)
def test_kampala_through_qgis_process(tile, shared_data, qgis_process, tmp_path):
    labels = shared_data / "fair_kampala_buildings/buildings.geojson"
    grid = shared_data / "fair_kampala_buildings/tiles" / tile
    output = tmp_path / "kampala.tif"
    qgis_process.run_algorithm(
        "rsdl:rasterizelabels",
        {"INPUT": str(labels), "REFERENCE": str(grid), "BURN_VALUE": 1, "OUTPUT": str(output)},
    )
    actual = read_band(output)
    assert actual.any()
    assert float((actual == gdal_rasterize_oracle(labels, grid, 1)).mean()) >= 0.999


def test_bad_input_fails_with_message_and_no_output(shared_data, qgis_process, tmp_path):
    output = tmp_path / "bad.tif"
    result = qgis_process.run_algorithm(
        "rsdl:rasterizelabels",
        {
            "INPUT": str(shared_data / "rsgislib_aber_s2/aber_osgb_multi_polys.geojson"),
            "REFERENCE": str(shared_data / "rsgislib_aber_s2/sen2_20210527_aber_mosaic.vrt"),
            "FIELD": "no_such_field",
            "OUTPUT": str(output),
        },
        check=False,
    )
    assert result["returncode"] != 0
    assert "has no field 'no_such_field'" in result["stdout"] + result["stderr"]
    assert not output.exists()
    assert leftover_temporaries(tmp_path) == []


def test_streams_with_a_tiny_gdal_cache(qgis_process, tmp_path):
    """With a 1 MB block cache GDAL must flush tiles mid-run; the mask must still be whole."""
    from osgeo import ogr, osr

    labels = tmp_path / "stripes.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32636)
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(str(labels))
    layer = datasource.CreateLayer("stripes", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("cls", ogr.OFTInteger))
    for i in range(30):  # 30 horizontal stripes, classes 1..3, each 50 m tall
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("cls", i % 3 + 1)
        y0 = 100000 - i * 100
        feature.SetGeometry(
            ogr.CreateGeometryFromWkt(f"POLYGON((0 {y0}, 3000 {y0}, 3000 {y0 - 50}, 0 {y0 - 50}, 0 {y0}))")
        )
        layer.CreateFeature(feature)
    datasource = None
    output = tmp_path / "stripes.tif"
    env = dict(qgis_process.env)
    qgis_process.env["GDAL_CACHEMAX"] = "1"
    try:
        qgis_process.run_algorithm(
            "rsdl:rasterizelabels",
            {
                "INPUT": str(labels),
                "FIELD": "cls",
                "EXTENT": "0,3000,97000,100000 [EPSG:32636]",
                "PIXEL_SIZE": 1,
                "OUTPUT": str(output),
            },
        )
    finally:
        qgis_process.env = env
    mask = read_band(output)
    assert mask.shape == (3000, 3000)
    rows = np.arange(3000)
    expected_rows = np.where((rows % 100) < 50, (rows // 100) % 3 + 1, 0)
    assert np.array_equal(mask, np.repeat(expected_rows[:, None], 3000, axis=1))
