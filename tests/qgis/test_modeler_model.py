"""The shipped Modeler model as QGIS desktop sees it: listed by the provider, with the outputs of
its steps, and run in-process as the Toolbox runs it."""

from __future__ import annotations

import json

from qgis.core import QgsApplication, QgsProcessingOutputHtml

MODEL_ID = "rsdl:rasterize_segment_evaluate"


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
