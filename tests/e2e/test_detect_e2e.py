"""rsdl:detect through the real qgis_process binary, as an analyst runs it: a written scene of
painted objects and a YOLOv8-layout detector; the GeoPackage and the JSON outputs against the
painted objects; and the refusal of a segmentation model."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from osgeo import ogr

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests import detector_models
from tests.object_scenes import EPSG, map_ring, read_features, write_object_scene

pytestmark = pytest.mark.qgis_process


def _iou(a: ogr.Geometry, b: ogr.Geometry) -> float:
    union = a.Union(b).GetArea()
    return a.Intersection(b).GetArea() / union if union else 0.0


def test_detect_finds_the_painted_objects(qgis_process, tmp_path):
    scene = write_object_scene(tmp_path / "scene")
    model = detector_models.yolov8_detector(tmp_path / "detector.onnx")
    output = tmp_path / "objects.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:detect",
        {
            "INPUT": str(scene.raster),
            "MODEL": str(model),
            "OUTPUT": str(output),
            "TILE_SIZE": 320,
            "OVERLAP": 31.25,  # 100 px: wider than the largest object (60 px)
            "CONFIDENCE_THRESHOLD": 0.3,
        },
    )
    results = result["results"]
    assert results["OUTPUT"] == str(output)
    assert results["TILES"] > 1  # objects were merged across tile seams
    assert results["EXECUTION_PROVIDER"] == "CPUExecutionProvider"
    expected = Counter(f"thing_{obj.class_id}" for obj in scene.painted)
    assert results["OBJECTS"] == len(scene.painted)
    assert json.loads(results["COUNTS"]) == dict(expected)

    datasource = ogr.Open(str(output))  # kept referenced: its layer dies with it
    assert datasource.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == str(EPSG)
    datasource = None
    objects = read_features(output)
    assert {"class_id", "class_name", "score", "area"} <= set(objects[0])
    assert Counter(obj["class_name"] for obj in objects) == expected
    geometries = [ogr.CreateGeometryFromWkt(obj["wkt"]) for obj in objects]
    for painted in scene.painted:  # each painted object found once, where it was painted, with its class
        truth = ogr.CreateGeometryFromWkt(map_ring(painted.box))
        overlaps = [_iou(truth, geometry) for geometry in geometries]
        best = max(range(len(objects)), key=overlaps.__getitem__)
        assert overlaps[best] > 0.99
        assert sum(overlap > 0 for overlap in overlaps) == 1  # found once, overlapping nothing else
        assert objects[best]["class_name"] == f"thing_{painted.class_id}"
        assert objects[best]["class_id"] == painted.class_id
        assert 0.3 <= objects[best]["score"] <= 1.0
        assert objects[best]["area"] == pytest.approx(truth.GetArea(), rel=0.02)
    assert any("Objects: " in line for line in result["log"]["info"])
    assert leftover_temporaries(tmp_path) == []


def test_a_segmentation_model_is_refused_with_the_way_out(qgis_process, test_models, tmp_path):
    scene = write_object_scene(tmp_path / "scene")
    output = tmp_path / "never.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:detect",
        {"INPUT": str(scene.raster), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)},
        check=False,
    )
    message = result.get("stdout", "") + result.get("stderr", "")
    assert result.get("returncode", 0) != 0
    assert "rsdl:segment" in message and "fcn_seg.onnx" in message, message
    assert not output.exists() and leftover_temporaries(tmp_path) == []
