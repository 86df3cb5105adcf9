"""rsdl:segment and rsdl:modelinfo through the real qgis_process binary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests.rasterize_cases import read_band, read_category_names

pytestmark = pytest.mark.qgis_process


def test_segment_with_confidence_and_polygons(qgis_process, sample_scene, test_models, tmp_path):
    output = tmp_path / "classes.tif"
    result = qgis_process.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(test_models["fcn_seg.onnx"]),
            "OUTPUT": str(output),
            "CONFIDENCE": str(tmp_path / "confidence.tif"),
            "OUTPUT_POLYGONS": str(tmp_path / "polygons.gpkg"),
            "MIN_AREA": 1.0,
        },
    )
    results = result["results"]
    assert results["EXECUTION_PROVIDER"] == "CPUExecutionProvider"
    assert results["TILES"] > 0
    classes = read_band(output)
    assert classes.shape == (512, 512) and set(np.unique(classes)) <= {0, 1, 2}
    assert read_category_names(output)[:3] == ["background", "building", "water"]
    confidence = read_band(tmp_path / "confidence.tif")
    assert confidence.min() > 0.0 and confidence.max() <= 1.0
    assert gdal.OpenEx(str(tmp_path / "polygons.gpkg")).GetLayer(0).GetFeatureCount() > 0
    assert any("running on CPUExecutionProvider" in line for line in result["log"]["info"])


def test_deepness_model_through_qgis_process(qgis_process, shared_data, tmp_path):
    model = (
        shared_data / "deepness_peer/models/dummy_segmentation_models/two_outputs_softmax_bsx2x512x512.onnx"
    )
    output = tmp_path / "coffee.tif"
    result = qgis_process.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(shared_data / "deepness_peer/dummy_fotomap_small.tif"),
            "MODEL": str(model),
            "OUTPUT": str(output),
        },
    )
    heads = json.loads(result["results"]["HEAD_OUTPUTS"])
    assert read_category_names(output)[:2] == ["Coffee", "Tea"]
    assert read_category_names(heads[0])[:2] == ["Juice", "Beer"]


def test_corrupt_model_fails_cleanly(qgis_process, sample_scene, test_models, tmp_path):
    output = tmp_path / "never.tif"
    result = qgis_process.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(test_models["truncated.onnx"]),
            "OUTPUT": str(output),
        },
        check=False,
    )
    assert result["returncode"] != 0
    assert "truncated.onnx" in result["stdout"] + result["stderr"]
    assert not output.exists() and leftover_temporaries(tmp_path) == []


def test_modelinfo_describes_a_peer_model(qgis_process, shared_data):
    model = (
        shared_data / "deepness_peer/models/dummy_segmentation_models/two_outputs_softmax_bsx2x512x512.onnx"
    )
    results = qgis_process.run_algorithm("rsdl:modelinfo", {"MODEL": str(model)})["results"]
    assert results["MODEL_TYPE"] == "Segmentor"
    names = {(c["head"], c["name"]) for c in json.loads(results["CLASSES"])}
    assert {(0, "Coffee"), (0, "Tea"), (1, "Juice"), (1, "Beer")} <= names
