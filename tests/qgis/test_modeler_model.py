"""The shipped Modeler models as QGIS desktop sees them: listed by the provider, with the outputs of
their steps, and run in-process as the Toolbox runs them."""

from __future__ import annotations

import json

import pytest
from qgis.core import QgsApplication, QgsProcessingOutputHtml

from tests import detector_models
from tests.object_scenes import read_features, write_object_scene

MODEL_ID = "rsdl:rasterize_segment_evaluate"
DETECT_MODEL_ID = "rsdl:detect_evaluate"
FIGURES = ("TP", "FP", "FN", "PRECISION", "RECALL", "F1", "AP50", "AP")


def test_provider_lists_the_shipped_model(rsdl_provider):
    model = QgsApplication.processingRegistry().algorithmById(MODEL_ID)
    assert model is not None, "the provider did not load rsdl_qgis_plugin/models/*.model3"
    assert {child.algorithmId() for child in model.childAlgorithms().values()} == {
        "rsdl:segment",
        "rsdl:rasterizelabels",
        "rsdl:evaluate",
    }
    destinations = {p.name() for p in model.destinationParameterDefinitions()}
    assert destinations == {"segment:classes", "rasterize:label_mask", "evaluate:report", "evaluate:metrics"}
    assert isinstance(model.outputDefinition("evaluate:report"), QgsProcessingOutputHtml)
    for name in ("image", "labels", "class_field", "unlabelled", "model"):
        assert model.parameterDefinition(name).help(), f"no help for the model's input {name}"


def test_model_runs_in_process(run_algorithm, sample_scene, test_models, tmp_path):
    report = tmp_path / "report.html"
    results = run_algorithm(
        MODEL_ID,
        {
            "image": str(sample_scene / "scene.tif"),
            "labels": [f"{sample_scene / 'labels.gpkg'}|layername=landcover"],
            "class_field": "class_name",
            "unlabelled": 0,
            "model": str(test_models["fcn_seg.onnx"]),
            "segment:classes": str(tmp_path / "classes.tif"),
            "rasterize:label_mask": str(tmp_path / "mask.tif"),
            "evaluate:report": str(report),
            "evaluate:metrics": str(tmp_path / "metrics.csv"),
        },
    )
    assert results["evaluate:report"] == str(report) and report.exists()
    # The steps' own results travel with the model's: the metrics as numbers and JSON.
    evaluate = results["CHILD_RESULTS"]["evaluate"]
    assert 0.0 <= evaluate["OVERALL_ACCURACY"] <= 1.0 and -1.0 <= evaluate["KAPPA"] <= 1.0
    assert 0.0 <= evaluate["MEAN_IOU"] <= 1.0
    assert json.loads(evaluate["METRICS"])["class_matching"] == "by name"


def test_provider_lists_the_detect_evaluate_model(rsdl_provider):
    model = QgsApplication.processingRegistry().algorithmById(DETECT_MODEL_ID)
    assert model is not None, "the provider did not load rsdl_qgis_plugin/models/detect_evaluate.model3"
    assert {child.algorithmId() for child in model.childAlgorithms().values()} == {
        "rsdl:detect",
        "rsdl:evaluateobjects",
    }
    destinations = {p.name() for p in model.destinationParameterDefinitions()}
    assert destinations == {"detect:objects", "evaluate:report", "evaluate:figures"}
    assert isinstance(model.outputDefinition("evaluate:report"), QgsProcessingOutputHtml)
    inputs = ("image", "model", "reference", "reference_class_field", "confidence_threshold", "iou_threshold")
    for name in inputs:
        assert model.parameterDefinition(name).help(), f"no help for the model's input {name}"
    # The optional inputs are left out of the runs below (reference_class_field, confidence_threshold).
    assert model.parameterDefinition("iou_threshold").defaultValue() == 0.5


@pytest.fixture(scope="module")
def object_scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("object_scene")
    return write_object_scene(folder), detector_models.yolov8_detector(folder / "detector.onnx")


def _chain(run_algorithm, scene, model, folder, **inputs) -> dict:
    return run_algorithm(
        DETECT_MODEL_ID,
        {
            "image": str(scene.raster),
            "model": str(model),
            "reference": str(scene.reference),
            "detect:objects": str(folder / "objects.gpkg"),
            "evaluate:report": str(folder / "report.html"),
            "evaluate:figures": str(folder / "figures.csv"),
            **inputs,
        },
    )


@pytest.mark.parametrize("class_field", ["class_name", None])
def test_detect_evaluate_equals_the_steps_run_by_hand(class_field, run_algorithm, object_scene, tmp_path):
    scene, model = object_scene
    chained = _chain(
        run_algorithm, scene, model, tmp_path, reference_class_field=class_field, iou_threshold=0.5
    )
    evaluated = chained["CHILD_RESULTS"]["evaluate"]
    # By hand: rsdl:detect, then rsdl:evaluateobjects on its output, at the same settings.
    detected = run_algorithm(
        "rsdl:detect",
        {"INPUT": str(scene.raster), "MODEL": str(model), "OUTPUT": str(tmp_path / "hand.gpkg")},
    )
    by_hand = run_algorithm(
        "rsdl:evaluateobjects",
        {
            "PREDICTIONS": str(tmp_path / "hand.gpkg"),
            "REFERENCE": str(scene.reference),
            "REF_CLASS_FIELD": class_field,
            "IOU_THRESHOLD": 0.5,
        },
    )
    assert {key: evaluated[key] for key in FIGURES} == {key: by_hand[key] for key in FIGURES}
    assert json.loads(evaluated["PER_CLASS"]) == json.loads(by_hand["PER_CLASS"])
    assert chained["CHILD_RESULTS"]["detect"]["OBJECTS"] == detected["OBJECTS"] == len(scene.painted)
    assert read_features(tmp_path / "objects.gpkg") == read_features(tmp_path / "hand.gpkg")
    # Every painted object found and matched; the reference box over empty ground missed.
    assert (evaluated["TP"], evaluated["FP"], evaluated["FN"]) == (len(scene.painted), 0, scene.unpainted)
    assert evaluated["PRECISION"] == 1.0
    assert 0.0 < evaluated["AP50"] < 1.0  # recall tops out below 1
    assert chained["evaluate:report"] == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").exists() and (tmp_path / "figures.csv").exists()


def test_detect_evaluate_runs_through_when_nothing_is_detected(run_algorithm, object_scene, tmp_path):
    scene, model = object_scene
    chained = _chain(run_algorithm, scene, model, tmp_path, confidence_threshold=1.0)
    evaluated = chained["CHILD_RESULTS"]["evaluate"]
    assert chained["CHILD_RESULTS"]["detect"]["OBJECTS"] == 0
    references = len(scene.painted) + scene.unpainted
    assert (evaluated["TP"], evaluated["FP"], evaluated["FN"]) == (0, 0, references)
    assert evaluated["PRECISION"] is None and evaluated["RECALL"] == 0.0 and evaluated["AP50"] == 0.0
    assert read_features(tmp_path / "objects.gpkg") == []
