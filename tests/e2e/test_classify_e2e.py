"""rsdl:classifytiles and rsdl:classifyfeatures through the real qgis_process binary."""

from __future__ import annotations

import pytest

from tests.classify_cases import (
    EXPECTED_CLASS,
    EXTENT_AREA,
    block_colour,
    read_features,
    union_area,
    write_footprints,
    write_scene,
)

pytestmark = pytest.mark.qgis_process


def test_classify_tiles_through_qgis_process(qgis_process, test_models, tmp_path):
    scene = write_scene(tmp_path / "scene.tif")
    output = tmp_path / "tiles.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:classifytiles",
        {
            "INPUT": str(scene),
            "MODEL": str(test_models["classifier.onnx"]),
            "MIN_PROBABILITY": 0.9,
            "OUTPUT": str(output),
        },
    )
    assert result["results"]["TILES"] == 12
    features = read_features(output)
    assert len(features) == 12
    assert union_area(features) == pytest.approx(EXTENT_AREA)
    for feature in features:
        xmin, xmax, ymin, ymax = feature["geometry"].GetEnvelope()
        assert feature["class_name"] == EXPECTED_CLASS[block_colour((xmin + xmax) / 2, (ymin + ymax) / 2)]


def test_classify_features_through_qgis_process(qgis_process, test_models, tmp_path):
    scene = write_scene(tmp_path / "scene.tif")
    footprints = tmp_path / "footprints.gpkg"
    expected = write_footprints(footprints)
    output = tmp_path / "classified.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:classifyfeatures",
        {
            "INPUT": str(footprints),
            "RASTER": str(scene),
            "MODEL": str(test_models["classifier.onnx"]),
            "MARGIN": 20,
            "OUTPUT": str(output),
        },
    )
    assert result["results"]["NOT_CLASSIFIED"] == 3
    classes = {f["name"]: f["class_name_2"] for f in read_features(output)}
    assert classes == expected


def test_segmentation_model_is_refused_through_qgis_process(qgis_process, test_models, tmp_path):
    scene = write_scene(tmp_path / "scene.tif")
    output = tmp_path / "refused.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:classifytiles",
        {"INPUT": str(scene), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)},
        check=False,
    )
    assert result["returncode"] != 0
    assert "rsdl:segment" in result["stdout"] + result["stderr"]
    assert not output.exists()
