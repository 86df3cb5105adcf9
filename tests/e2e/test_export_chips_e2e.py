"""rsdl:exportchips through the real qgis_process binary, as a shell user runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal, ogr

from rsdl_qgis_plugin.core.datasets.chip_folder import load_dataset_document
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries

pytestmark = pytest.mark.qgis_process


def test_help_documents_parameters_and_layout(qgis_process):
    text = qgis_process.run("help", "rsdl:exportchips").stdout
    for name in (
        "INPUT",
        "MASK",
        "LABELS",
        "CHIP_SIZE",
        "STRIDE",
        "MODE",
        "MIN_COVER",
        "VAL_FRACTION",
        "TEST_FRACTION",
        "SPLIT_BLOCK",
        "SEED",
        "KEEP_EMPTY",
        "OUTPUT",
        "BURN_VALUE",
    ):
        assert name in text
    assert "dataset.json" in text and "index.gpkg" in text


def test_vector_labels_to_chips_through_qgis_process(shared_data, qgis_process, tmp_path):
    image = shared_data / "solaris_atlanta/sample_geotiff.tif"
    output = tmp_path / "chips"
    result = qgis_process.run_algorithm(
        "rsdl:exportchips",
        {
            "INPUT": str(image),
            "LABELS": str(shared_data / "solaris_atlanta/geotiff_labels.geojson"),
            "BURN_VALUE": 1,
            "CHIP_SIZE": 128,
            "SPLIT_BLOCK": 256,
            "VAL_FRACTION": 0.25,
            "MODE": 2,
            "MIN_COVER": 0.05,
            "OUTPUT": str(output),
        },
    )
    results = result["results"]
    counts = json.loads(results["CHIP_COUNTS"])
    assert results["OUTPUT"] == str(output)
    assert results["INDEX"] == str(output / "index.gpkg")
    assert counts["train"] > 0 and counts["val"] > 0
    for split in ("train", "val", "test"):
        assert len(list(output.glob(f"{split}/images/*.tif"))) == counts[split]
        assert len(list(output.glob(f"{split}/masks/*.tif"))) == counts[split]
    assert len(list(output.glob("classification/*/*/*.tif"))) == counts["total"] - counts["unclassified"]
    index = ogr.Open(str(output / "index.gpkg"))
    assert index.GetLayerByName("chips").GetFeatureCount() == counts["total"]
    index = None
    document = load_dataset_document(output)
    assert document["counts"] == counts
    assert document["statistics"] == json.loads(results["STATISTICS"])
    # One chip against the source window, read independently.
    source = gdal.Open(str(image))
    chip = gdal.Open(str(sorted(output.glob("val/images/*.tif"))[-1]))
    x0, _, _, y0, _, _ = chip.GetGeoTransform()
    sx0, sdx, _, sy0, _, sdy = source.GetGeoTransform()
    col, row = round((x0 - sx0) / sdx), round((y0 - sy0) / sdy)
    assert np.array_equal(chip.ReadAsArray(), source.ReadAsArray(col, row, 128, 128))
    assert not (output / ".labels-mask").exists()
    assert leftover_temporaries(tmp_path) == []


def test_errors_reach_the_shell(shared_data, qgis_process, tmp_path):
    result = qgis_process.run_algorithm(
        "rsdl:exportchips",
        {
            "INPUT": str(shared_data / "solaris_atlanta/sample_geotiff.tif"),
            "CHIP_SIZE": 64,
            "OUTPUT": str(tmp_path / "chips"),
        },
        check=False,
    )
    assert result["returncode"] != 0
    assert "Give the labels" in result["stdout"] + result["stderr"]
    assert list(tmp_path.iterdir()) == []
