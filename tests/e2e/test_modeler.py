"""The shipped Graphical Modeler models: regenerated identically by their script (on the QGIS that
wrote them; as equivalent models on newer QGIS), and run through qgis_process both as the
provider's algorithms and as .model3 paths."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from xml.etree.ElementTree import canonicalize

import numpy as np
import pytest

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests import detector_models
from tests.object_scenes import read_features, write_object_scene
from tests.rasterize_cases import read_band

REPO_MODEL = "rsdl_qgis_plugin/models/rasterize_segment_evaluate.model3"
MODEL_ID = "rsdl:rasterize_segment_evaluate"
SCENE_CLASSES = {"background", "building", "water", "vegetation"}
DETECT_REPO_MODEL = "rsdl_qgis_plugin/models/detect_evaluate.model3"
DETECT_MODEL_ID = "rsdl:detect_evaluate"
# Each shipped model (scripts/build_modeler_model.py's name) and the ids of its steps.
MODEL_STEPS = {
    "rasterize_segment_evaluate": {"segment", "rasterize", "evaluate"},
    "detect_evaluate": {"detect", "evaluate"},
}


# The QGIS that wrote the committed model. Newer QGIS writes new models in another form (from 3.26,
# qgis/QGIS#47559: ``internal_version`` Version2, outputs named after their descriptions instead
# of "<step>:<output>", and more keys), so only this version can reproduce the file itself.
GENERATED_WITH = (3, 22)


def _qgis_version() -> tuple[int, int]:
    from qgis.core import Qgis

    return Qgis.QGIS_VERSION_INT // 10000, Qgis.QGIS_VERSION_INT // 100 % 100


def _build_model(repo_root, *arguments: str) -> str:
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    process = subprocess.run(
        [sys.executable, str(repo_root / "scripts/build_modeler_model.py"), *arguments],
        check=True,
        capture_output=True,
        env=environment,
        text=True,
        timeout=120,
    )
    return process.stdout


def test_the_script_builds_every_shipped_model(repo_root, tmp_path):
    shipped = {path.name for path in (repo_root / "rsdl_qgis_plugin/models").glob("*.model3")}
    assert shipped == {f"{name}.model3" for name in MODEL_STEPS}, "a .model3 file without a builder?"
    _build_model(repo_root, "--output-dir", str(tmp_path))  # no model named: all of them
    assert {path.name for path in tmp_path.iterdir()} == shipped


@pytest.mark.parametrize("name", sorted(MODEL_STEPS))
def test_regenerating_the_model_gives_the_committed_file(name, repo_root, tmp_path):
    _build_model(repo_root, name, "--output-dir", str(tmp_path))
    written, repo_model = tmp_path / f"{name}.model3", f"rsdl_qgis_plugin/models/{name}.model3"
    assert [path.name for path in tmp_path.iterdir()] == [written.name]  # only the model asked for
    if _qgis_version() == GENERATED_WITH:
        # Canonical XML: the same content whatever order Qt wrote the attributes in.
        regenerated = canonicalize(from_file=str(written), strip_text=True)
        committed = canonicalize(from_file=str(repo_root / repo_model), strip_text=True)
        assert regenerated == committed, (
            "The committed model differs from what scripts/build_modeler_model.py writes: run it "
            "and commit the result."
        )
        return
    # Newer QGIS: the committed file cannot be reproduced byte for byte, so both files are
    # loaded by this QGIS and compared as it sees them (inputs, steps, each step's parameter
    # values and sources, outputs, help), output naming aside; the committed one must be valid.
    summaries = json.loads(_build_model(repo_root, "--summary", str(repo_root / repo_model), str(written)))
    committed, regenerated = summaries[str(repo_root / repo_model)], summaries[str(written)]
    problems = committed["problems"]
    assert problems == [], f"this QGIS finds the committed model invalid: {problems}"
    assert set(committed["model"]["children"]) == MODEL_STEPS[name]
    assert committed["model"] == regenerated["model"], (
        "The committed model, as this QGIS loads it, differs from what scripts/build_modeler_model.py "
        f"builds here: regenerate it with QGIS {'.'.join(map(str, GENERATED_WITH))} and commit the result."
    )


@pytest.mark.qgis_process
@pytest.mark.parametrize("by", ["id", "path"])
def test_model_runs_through_qgis_process(by, qgis_process, repo_root, sample_scene, test_models, tmp_path):
    algorithm = MODEL_ID if by == "id" else str(repo_root / REPO_MODEL)
    outputs = {
        "segment:classes": tmp_path / "classes.tif",
        "rasterize:label_mask": tmp_path / "label_mask.tif",
        "evaluate:report": tmp_path / "report.html",
        "evaluate:metrics": tmp_path / "metrics.csv",
    }
    # QGIS 3.22's qgis_process wants every model output named (TEMPORARY_OUTPUT would do).
    result = qgis_process.run_algorithm(
        algorithm,
        {
            "image": str(sample_scene / "scene.tif"),
            "labels": f"{sample_scene / 'labels.gpkg'}|layername=landcover",
            "class_field": "class_name",
            "model": str(test_models["fcn_seg.onnx"]),
            **{name: str(path) for name, path in outputs.items()},
        },
    )
    assert result["results"] == {name: str(path) for name, path in outputs.items()}
    assert all(path.exists() for path in outputs.values())
    assert (tmp_path / "classes.qml").exists()  # the class raster opens styled
    # The labels are burnt onto the class raster's grid, so the two align pixel for pixel.
    assert read_band(outputs["segment:classes"]).shape == read_band(outputs["rasterize:label_mask"]).shape

    rows = list(csv.DictReader(outputs["evaluate:metrics"].open(encoding="utf-8")))
    assert {row["name"] for row in rows} == SCENE_CLASSES
    ratios = [float(row[key]) for row in rows for key in ("iou", "f1", "precision", "recall") if row[key]]
    assert ratios and all(0.0 <= ratio <= 1.0 for ratio in ratios)
    support = sum(int(row["support"]) for row in rows)
    assert support == np.count_nonzero(read_band(outputs["rasterize:label_mask"]) != 255)
    page = outputs["evaluate:report"].read_text(encoding="utf-8")
    assert "Overall accuracy" in page and "data:image/png;base64," in page
    info = result["log"]["info"]
    # water is 3 in the labels (alphabetical) and 2 in the model: matched by name
    assert any("'water' (3) is scored as value 2" in line for line in info)
    assert leftover_temporaries(tmp_path) == []


@pytest.fixture(scope="module")
def object_scene(tmp_path_factory):
    """A written scene of painted objects with its reference boxes, and a YOLOv8-layout detector."""
    folder = tmp_path_factory.mktemp("object_scene")
    return write_object_scene(folder), detector_models.yolov8_detector(folder / "detector.onnx")


@pytest.fixture(scope="module")
def detected_by_hand(qgis_process, object_scene, tmp_path_factory) -> tuple[dict, list[dict]]:
    """rsdl:detect, then rsdl:evaluateobjects on its output, each through qgis_process: the
    evaluation's results and the detected objects."""
    scene, model = object_scene
    objects = tmp_path_factory.mktemp("by_hand") / "objects.gpkg"
    qgis_process.run_algorithm(
        "rsdl:detect", {"INPUT": str(scene.raster), "MODEL": str(model), "OUTPUT": str(objects)}
    )
    evaluated = qgis_process.run_algorithm(
        "rsdl:evaluateobjects",
        {
            "PREDICTIONS": str(objects),
            "REFERENCE": str(scene.reference),
            "REF_CLASS_FIELD": "class_name",
            "IOU_THRESHOLD": 0.5,
            **{
                name: "TEMPORARY_OUTPUT"
                for name in ("OUTPUT_MATCHED", "OUTPUT_FALSE_POSITIVES", "OUTPUT_MISSED")
            },
        },
    )
    return evaluated["results"], read_features(objects)


@pytest.mark.qgis_process
@pytest.mark.parametrize("by", ["id", "path"])
def test_detect_evaluate_runs_through_qgis_process(
    by, qgis_process, repo_root, object_scene, detected_by_hand, tmp_path
):
    scene, model = object_scene
    algorithm = DETECT_MODEL_ID if by == "id" else str(repo_root / DETECT_REPO_MODEL)
    outputs = {
        "detect:objects": tmp_path / "objects.gpkg",
        "evaluate:report": tmp_path / "report.html",
        "evaluate:figures": tmp_path / "figures.csv",
    }
    result = qgis_process.run_algorithm(
        algorithm,
        {
            "image": str(scene.raster),
            "model": str(model),
            "reference": str(scene.reference),
            "reference_class_field": "class_name",
            "iou_threshold": 0.5,
            **{name: str(path) for name, path in outputs.items()},
        },
    )
    assert result["results"] == {name: str(path) for name, path in outputs.items()}
    by_hand, hand_objects = detected_by_hand
    # The chain's objects are detect's own, and its figures what evaluateobjects gives on them.
    assert read_features(outputs["detect:objects"]) == hand_objects
    rows = list(csv.DictReader(outputs["evaluate:figures"].open(encoding="utf-8")))
    totals = rows[-1]
    assert totals["name"] == "(all classes)"
    assert [int(totals[key]) for key in ("tp", "fp", "fn")] == [by_hand["TP"], by_hand["FP"], by_hand["FN"]]
    for column, key in (("precision", "PRECISION"), ("recall", "RECALL"), ("ap50", "AP50"), ("ap", "AP")):
        assert float(totals[column]) == pytest.approx(by_hand[key], abs=1e-6), column
    per_class = {row["name"]: row for row in json.loads(by_hand["PER_CLASS"])}
    assert {row["name"]: int(row["tp"]) for row in rows[:-1]} == {
        name: row["tp"] for name, row in per_class.items()
    }
    # Every painted object detected and matched; the reference box over empty ground missed.
    assert (by_hand["TP"], by_hand["FP"], by_hand["FN"]) == (len(scene.painted), 0, scene.unpainted)
    assert len(hand_objects) == len(scene.painted)
    page = outputs["evaluate:report"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert leftover_temporaries(tmp_path) == []
