"""What a model says about itself (inference/model_report.py), on the generated test models: shapes
against the ONNX graph read with the onnx library, classes against the specs the models were built
with (scripts/make_test_models.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rsdl_qgis_plugin.core.contract.model_spec import SPEC_VERSION
from rsdl_qgis_plugin.core.reports.sections import sections_html
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.model_report import describe_model, model_classes
from scripts.make_test_models import CLASSIFIER_SPEC, SEG_SPEC, TWO_HEADS_SPEC
from tests.html_pages import read_page

onnx = pytest.importorskip("onnx", reason="the onnx library reads the graph independently")

ONNX_TYPES = {1: "float32", 10: "float16", 11: "float64"}


def graph_shapes(path) -> tuple[list[str], list[str]]:
    """Inputs and outputs as 'name: [dims] dtype', read from the ONNX graph itself."""
    graph = onnx.load(str(path)).graph

    def text(value) -> str:
        tensor = value.type.tensor_type
        dims = ", ".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in tensor.shape.dim)
        return f"{value.name}: [{dims}] {ONNX_TYPES[tensor.elem_type]}"

    return [text(v) for v in graph.input], [text(v) for v in graph.output]


def report(path) -> dict[str, dict[str, str]]:
    sections = describe_model(load_model(path))
    as_dict = {heading: dict(rows) for heading, rows in sections}
    assert len(as_dict) == len(sections)  # headings are distinct
    return as_dict


def test_the_segmentation_model_reports_its_shapes_classes_and_spec(test_models):
    path = test_models["fcn_seg.onnx"]
    sections = report(path)
    assert list(sections) == ["Model", "Input", "Normalisation", "Outputs", "Classes", "Training"]
    inputs, outputs = graph_shapes(path)
    assert sections["Input"]["Input"] == inputs[0] == "input: [?, 3, ?, ?] float32"
    assert [sections["Outputs"][f"Output {i + 1}"] for i in range(len(outputs))] == outputs
    model = sections["Model"]
    assert (model["File"], model["Format"]) == (str(path), "ONNX")
    assert model["Model type"].startswith("Segmentor (run by rsdl:segment")
    assert model["rsdl spec version"] == str(SPEC_VERSION)  # written by ModelSpec.to_metadata
    assert sections["Input"]["Expected bands"] == "1, 2, 3"
    assert sections["Input"]["Tile size"] == f"{SEG_SPEC.tile_size} px"
    assert sections["Input"]["Tile overlap"] == "25 %"
    assert sections["Input"]["Resolution"] == "50 cm/px (0.5 m)"
    # SEG_SPEC carries no seg_thresh: its three channels take a plain argmax
    assert sections["Outputs"]["Threshold (seg_thresh)"] == "0.5 for one channel; none for several (argmax)"
    assert sections["Normalisation"]["mean"] == ", ".join(f"{v:g}" for v in SEG_SPEC.standardization_mean)
    assert sections["Normalisation"]["std"] == ", ".join(f"{v:g}" for v in SEG_SPEC.standardization_std)
    assert sections["Classes"] == {
        f"head 1, value {value}": f"{name}  {SEG_SPEC.class_colors[value]}"
        for value, name in SEG_SPEC.class_names.items()
    }
    assert {k: json.loads(v) for k, v in sections["Training"].items()} == SEG_SPEC.training


def test_every_head_lists_its_classes(test_models):
    backend = load_model(test_models["fcn_two_heads.onnx"])
    classes = model_classes(backend)
    expected = [(0, v, n) for v, n in TWO_HEADS_SPEC.class_names.items()]
    expected += [(1, v, n) for v, n in TWO_HEADS_SPEC.more_head_class_names[0].items()]
    assert [(c["head"], c["value"], c["name"]) for c in classes] == expected
    assert all(c["color"] is None for c in classes)  # the spec gives no colours
    _, outputs = graph_shapes(test_models["fcn_two_heads.onnx"])
    rows = dict(describe_model(backend))["Outputs"]
    assert [text for label, text in rows if label.startswith("Output ")] == outputs
    assert ("head 2, value 0", "tree  (no colour)") in dict(describe_model(backend))["Classes"]


def test_a_model_without_metadata_names_its_output_channels(test_models):
    path = test_models["fcn_no_metadata.onnx"]
    _, outputs = graph_shapes(path)
    channels = int(outputs[0].split("[")[1].split(",")[1])  # [batch, channels, height, width]
    sections = report(path)
    assert sections["Classes"] == {f"head 1, value {v}": f"class_{v}  (no colour)" for v in range(channels)}
    assert sections["Model"]["rsdl spec version"] == "none (not written by rsdl)"
    assert sections["Input"]["Expected bands"] == "the first 3 band(s) of the raster (1 to 3)"
    assert sections["Input"]["Tile size"] == "not stated" and "Training" not in sections


def test_the_classifier_and_the_regressor(test_models):
    classifier = report(test_models["classifier.onnx"])
    assert (
        classifier["Model"]["Model type"] == "Classifier (run by rsdl:classifytiles, rsdl:classifyfeatures)"
    )
    inputs, outputs = graph_shapes(test_models["classifier.onnx"])
    assert classifier["Input"]["Input"] == inputs[0] and classifier["Outputs"] == {"Output 1": outputs[0]}
    assert list(classifier["Classes"].values()) == [
        f"{name}  {CLASSIFIER_SPEC.class_colors[value]}"
        for value, name in CLASSIFIER_SPEC.class_names.items()
    ]
    regressor = report(test_models["fcn_regressor.onnx"])
    assert regressor["Classes"] == {"": "none named"}
    assert "Threshold (seg_thresh)" not in regressor["Outputs"]


def test_a_carried_seg_thresh_is_reported_for_every_channel(test_models):
    backend = load_model(test_models["fcn_seg.onnx"])
    backend.spec = dataclasses.replace(backend.spec, seg_thresh=0.3)
    rows = dict(dict(describe_model(backend))["Outputs"])
    assert rows["Threshold (seg_thresh)"] == "0.3 for every channel (class 0 where none reaches it)"


def test_a_fixed_input_wins_over_the_tile_size_of_the_metadata(test_models):
    backend = load_model(test_models["fcn_seg_batch2.onnx"])
    inputs, _ = graph_shapes(test_models["fcn_seg_batch2.onnx"])
    assert inputs[0] == "input: [2, 3, 64, 64] float32"
    rows = dict(dict(describe_model(backend))["Input"])
    assert (rows["Batch size"], rows["Tile size"]) == ("2", "64 px")
    backend.spec = dataclasses.replace(backend.spec, tile_size=128)
    rows = dict(dict(describe_model(backend))["Input"])
    assert rows["Tile size"] == "64 px (fixed by the model's input; its metadata says 128)"


def test_the_report_renders_as_a_page_with_every_row(test_models):
    sections = describe_model(load_model(test_models["fcn_seg.onnx"]))
    reader = read_page(sections_html("Model information", sections))
    assert reader.headings["h2"] == [heading for heading, _ in sections]
    assert reader.tables == [[list(row) for row in rows] for _, rows in sections]


def test_a_detector_report_names_its_layout_and_thresholds(tmp_path):
    from tests import detector_models

    backend = load_model(
        detector_models.yolov8_seg_detector(tmp_path / "seg.onnx", metadata={"det_conf": 0.4})
    )
    outputs = dict(dict(describe_model(backend))["Outputs"])
    assert outputs["Detection layout"] == "YOLO -seg layout, 3 classes, instance masks"
    assert outputs["Confidence threshold (det_conf)"] == "0.4 (the model's)"
    assert outputs["IoU threshold (det_iou_thresh)"] == "0.45 (rsdl's default)"
    assert "Threshold (seg_thresh)" not in outputs


def test_a_detector_whose_layout_rsdl_cannot_read_is_described_with_the_reason(tmp_path):
    import onnx

    from tests import detector_models

    path = detector_models.yolov8_detector(tmp_path / "v8.onnx")
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == "class_names":
            prop.value = '{"0": "a", "1": "b", "2": "c", "3": "d", "4": "e"}'  # 5 names, 3 scores
    onnx.save(model, path)
    outputs = dict(dict(describe_model(load_model(path)))["Outputs"])
    assert outputs["Detection layout"].startswith("not readable by rsdl:detect:")
    assert "[?, 7, ?]" in outputs["Detection layout"]
