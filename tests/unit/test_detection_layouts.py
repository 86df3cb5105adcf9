"""Detector output layouts (core/contract/detection_layouts.py): recognition from shapes, det_type
and class names deciding ambiguities, and the refusals naming the shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsdl_qgis_plugin.core.contract.detection_layouts import (
    DetectionLayout,
    detection_outputs,
    shapes_text,
)
from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import ModelSpecError
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.detector import ObjectDecoder

V5, V8, SEG, OBB, RSDL = (
    DetectionLayout.YOLO_V5,
    DetectionLayout.YOLO_V8,
    DetectionLayout.YOLO_SEG,
    DetectionLayout.YOLO_OBB,
    DetectionLayout.RSDL,
)
RSDL_NAMES = ["boxes", "scores", "class_ids"]


def _spec(names: int | None = None, det_type: str | None = None, model_type=ModelType.DETECTOR) -> ModelSpec:
    class_names = {k: f"c{k}" for k in range(names)} if names else {}
    return ModelSpec(model_type=model_type, class_names=class_names, det_type=det_type)


@pytest.mark.parametrize(
    ("spec", "shapes", "names", "expected"),
    [
        # (layout, classes, mask coefficients, channels_last, objectness, predictions, prototypes)
        (_spec(), [(1, 25200, 85)], None, (V5, 80, 0, True, True, 0, None)),
        (_spec(), [(None, None, 85)], None, (V5, 80, 0, True, True, 0, None)),
        (_spec(), [(1, 84, 8400)], None, (V8, 80, 0, False, False, 0, None)),
        (_spec(), [(None, 84, None)], None, (V8, 80, 0, False, False, 0, None)),
        (_spec(), [(1, 116, 8400), (1, 32, 160, 160)], None, (SEG, 80, 32, False, False, 0, 1)),
        (_spec(), [(1, 32, 160, 160), (1, 116, 8400)], None, (SEG, 80, 32, False, False, 1, 0)),
        # YOLOv8 detect and -obb share a shape: class names, else det_type, decide.
        (_spec(), [(1, 20, 21504)], None, (V8, 16, 0, False, False, 0, None)),
        (_spec(15), [(1, 20, 21504)], None, (OBB, 15, 0, False, False, 0, None)),
        (_spec(det_type="YOLO_Ultralytics_obb"), [(1, 20, 21504)], None, (OBB, 15, 0, False, False, 0, None)),
        (_spec(16), [(1, 20, 21504)], None, (V8, 16, 0, False, False, 0, None)),
        # Deepness's det_type values.
        (_spec(det_type="YOLO_v6"), [(1, 8400, 85)], None, (V5, 80, 0, True, False, 0, None)),
        (_spec(det_type="YOLO_v9"), [(1, 84, 8400)], None, (V8, 80, 0, False, False, 0, None)),
        (_spec(det_type="YOLO_Ultralytics"), [(1, 84, 8400)], None, (V8, 80, 0, False, False, 0, None)),
        (_spec(det_type="YOLO_v5_or_v7_default"), [(1, 85, 8400)], None, (V5, 80, 0, False, True, 0, None)),
        (
            _spec(det_type="YOLO_Ultralytics_segmentation"),
            [(1, 37, 8400), (1, 32, 160, 160)],
            None,
            (SEG, 1, 32, False, False, 0, 1),
        ),
        # A channels-last output whose class names count fits YOLOv8 (a transposed export).
        (_spec(80), [(1, 8400, 84)], None, (V8, 80, 0, True, False, 0, None)),
        (_spec(80), [(1, 8400, 85)], None, (V5, 80, 0, True, True, 0, None)),
    ],
)
def test_yolo_layouts_are_recognised(spec, shapes, names, expected):
    layout = detection_outputs(spec, shapes, names)
    got = (
        layout.layout,
        layout.class_count,
        layout.mask_coefficients,
        layout.channels_last,
        layout.objectness,
        layout.predictions,
        layout.prototypes,
    )
    assert got == expected
    assert layout.oriented == (layout.layout is OBB)
    assert layout.has_masks == (layout.layout is SEG)
    assert layout.class_start == (5 if layout.layout is V5 else 4)


def test_rsdl_layout_is_recognised_by_its_output_names():
    shapes = [(None, 100), (None, 100, 4), (None, 100)]
    layout = detection_outputs(_spec(3), shapes, ["scores", "boxes", "class_ids"])
    assert (layout.layout, layout.class_count, layout.predictions, layout.scores, layout.class_ids) == (
        RSDL,
        3,
        1,
        0,
        2,
    )
    assert not layout.has_masks and not layout.oriented
    masked = detection_outputs(
        _spec(model_type=ModelType.INSTANCE_SEGMENTOR),
        [(None, 100, 4), (None, 100), (None, 100), (None, 100, 640, 640)],
        [*RSDL_NAMES, "masks"],
    )
    assert masked.has_masks and masked.masks == 3 and masked.class_count == 0
    assert masked.description == "rsdl layout, instance masks"


def test_descriptions():
    assert detection_outputs(_spec(), [(1, 84, 8400)]).description == "YOLOv8/v11 layout, 80 classes"
    v6 = detection_outputs(_spec(det_type="YOLO_v6"), [(1, 6, 8400)])
    assert v6.description == "YOLOv5/v7 layout, 1 class, objectness ignored"


@pytest.mark.parametrize(
    ("spec", "shapes", "names", "message"),
    [
        (_spec(), [(1, 84, 8400), (1, 32, 160)], None,
         r"^The model 'm.onnx' has outputs \[1, 84, 8400\] and \[1, 32, 160\], which rsdl cannot read as "
         r"a detector: a YOLO detector has one prediction output .* rsdl reads YOLOv5/v7 "
         r"\[B, N, 5 \+ classes\]"),
        (_spec(3), [(1, 84, 8400)], None,
         r"output \[1, 84, 8400\].*holds? 80 class scores, but 'class_names' names 3 classes; fix "
         r"'class_names' or set Deepness's 'det_type'"),
        (_spec(3, "YOLO_Ultralytics"), [(1, 84, 8400)], None, r"names 3 classes; fix 'class_names'\. rsdl"),
        (_spec(det_type="YOLO_Ultralytics_segmentation"), [(1, 84, 8400)], None,
         r"'det_type' YOLO_Ultralytics_segmentation needs a prototype output"),
        (_spec(det_type="YOLO_Ultralytics_obb"), [(1, 116, 8400), (1, 32, 160, 160)], None,
         r"'det_type' YOLO_Ultralytics_obb needs one output, not prototypes"),
        (_spec(), [(None, None, None)], None, r"output \[\?, \?, \?\].*both non-batch dimensions .* dynamic"),
        (_spec(), [(1, 4, 8400)], None, r"as YOLOv8/v11, 4 values per row cannot hold x, y, w, h and class"),
        (_spec(), [(1, 36, 8400), (1, 32, 160, 160)], None, r"as YOLO -seg, 36 values per row cannot hold"),
        (_spec(), [(1, 116, 8400), (1, None, 160, 160)], None, r"prototype output's channel count"),
        (_spec(), [(1, 10)], None, r"output \[1, 10\].*no prediction output"),
        (_spec(), [(1, 84, 8400), (1, 84, 8400)], None, r"one prediction output"),
        (_spec(model_type=ModelType.INSTANCE_SEGMENTOR), [(1, 84, 8400)], None,
         r"declares 'model_type' InstanceSegmentor, but its YOLOv8/v11 outputs carry no masks"),
        (_spec(), [(1, 100, 5), (1, 100), (1, 100)], RSDL_NAMES,
         r"rsdl's output 'boxes' must be \[B, N, 4\], not \[1, 100, 5\]"),
        (_spec(), [(1, 100, 4), (1, 90), (1, 100)], RSDL_NAMES, r"same number of rows N"),
        (_spec(det_type="YOLO_v9"), [(1, 100, 4), (1, 100), (1, 100)], RSDL_NAMES,
         r"named as rsdl's .* but its 'det_type' says YOLO_v9"),
    ],
)  # fmt: skip
def test_outputs_no_layout_explains_are_refused_naming_the_shapes(spec, shapes, names, message):
    with pytest.raises(ModelSpecError, match=message):
        detection_outputs(spec, shapes, names, "m.onnx")


def test_shapes_text():
    assert shapes_text([(1, None, 3)]) == "[1, ?, 3]"
    assert shapes_text([(1,), (2,), (3,)]) == "[1], [2] and [3]"


def test_deepness_dummy_detector_is_refused_clearly(shared_data: Path):
    # Deepness's one_output_sigmoid_red_detector has one map output and no metadata: no detector layout.
    path = shared_data / "deepness_peer" / "models" / "one_output_sigmoid_red_detector.onnx"
    backend = load_model(str(path))
    assert [o.shape for o in backend.outputs] == [(None, 1, 512, 512)]
    with pytest.raises(ModelSpecError) as refusal:
        ObjectDecoder.for_backend(backend)
    assert str(refusal.value).startswith(
        "The model 'one_output_sigmoid_red_detector.onnx' has output [?, 1, 512, 512], which rsdl cannot "
        "read as a detector: it has no prediction output [B, values, N] or [B, N, values]. rsdl reads "
        "YOLOv5/v7"
    )
