"""Which algorithm "Run model on active raster" opens for a model file (algorithm_choice.py): rsdl's
generated and released models, the peer Deepness's models, and detector-typed ONNX files built here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.processing_provider.algorithm_choice import algorithm_for_model

onnx = pytest.importorskip("onnx", reason="builds detector-typed and stripped ONNX files")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OPSET, IR_VERSION = 17, 8  # as scripts/make_test_models.py: readable by old onnxruntimes


def yolo_like_onnx(path: Path, metadata: dict[str, str], masks: bool = False) -> Path:
    """A 64 px YOLOv8-shaped graph: [1, 4 + classes (+ 4 mask coefficients), 4096] boxes, and with
    ``masks`` a [1, 4, 16, 16] prototype output. The weights are arbitrary: nothing is decoded."""
    rows = 4 + 2 + (4 if masks else 0)
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(size=(rows, 3, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1, rows, 64 * 64], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["features"]),
        helper.make_node("Reshape", ["features", "shape"], ["output0"]),
    ]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, rows, 64 * 64])]
    if masks:
        initializers.append(
            numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "proto_w")
        )
        nodes += [
            helper.make_node("Conv", ["images", "proto_w"], ["proto_features"]),
            helper.make_node(
                "AveragePool", ["proto_features"], ["output1"], kernel_shape=[4, 4], strides=[4, 4]
            ),
        ]
        outputs.append(helper.make_tensor_value_info("output1", TensorProto.FLOAT, [1, 4, 16, 16]))
    graph = helper.make_graph(
        nodes,
        "yolo_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def with_metadata(source: Path, target: Path, metadata: dict[str, str]) -> Path:
    """A copy of ``source`` whose metadata is exactly ``metadata``."""
    model = onnx.load(str(source))
    del model.metadata_props[:]
    helper.set_model_props(model, metadata)
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("fcn_seg.onnx", "rsdl:segment"),
        ("fcn_no_metadata.onnx", "rsdl:segment"),  # no model_type: a Segmentor, as in Deepness
        ("fcn_two_heads.onnx", "rsdl:segment"),
        ("fcn_regressor.onnx", "rsdl:segment"),
        ("classifier.onnx", "rsdl:classifytiles"),
    ],
)
def test_rsdl_test_models(name, algorithm, test_models):
    assert algorithm_for_model(test_models[name]) == algorithm


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("buildings_kampala", "rsdl:segment"),
        ("landcover_aber_s2", "rsdl:segment"),
        ("kampala_classifier", "rsdl:classifytiles"),
    ],
)
def test_released_models(name, algorithm):
    assert algorithm_for_model(REPO / "models" / name / "model.onnx") == algorithm


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("dummy_segmentation_models/dummy_model.onnx", "rsdl:segment"),
        ("dummy_segmentation_models/two_outputs_softmax_bsx2x512x512.onnx", "rsdl:segment"),
        ("one_output_sigmoid_red_detector.onnx", "rsdl:segment"),  # a sigmoid mask, no boxes
        ("dummy_regression_models/dummy_regression_model.onnx", "rsdl:segment"),
    ],
)
def test_deepness_models(name, algorithm, shared_data):
    assert algorithm_for_model(shared_data / "deepness_peer/models" / name) == algorithm


def test_a_classifier_without_model_type_goes_to_classifytiles(test_models, tmp_path):
    # [B, C] outputs: rsdl:segment would refuse it, rsdl:classifytiles runs undeclared classifiers
    bare = with_metadata(test_models["classifier.onnx"], tmp_path / "bare_classifier.onnx", {})
    assert algorithm_for_model(bare) == "rsdl:classifytiles"


@pytest.mark.parametrize("model_type", ["Detector", "detector", "InstanceSegmentor"])
def test_detectors_and_instance_segmentors_go_to_detect(model_type, tmp_path):
    metadata = {"model_type": f'"{model_type}"', "class_names": '{"0": "car", "1": "tank"}'}
    path = yolo_like_onnx(tmp_path / "yolo.onnx", metadata, masks=model_type == "InstanceSegmentor")
    assert algorithm_for_model(path) == "rsdl:detect"


def test_a_type_no_algorithm_runs_is_refused_with_its_name(shared_data):
    # Deepness's recognition model declares "Regression", which no rsdl algorithm runs
    with pytest.raises(RsdlError, match=r"'Regression' model.*no rsdl algorithm runs that type"):
        algorithm_for_model(shared_data / "deepness_peer/models/dummy_recognition_model.onnx")


@pytest.mark.parametrize("name", ["truncated.onnx", "not_a_model.onnx", "evil.pth"])
def test_unreadable_files_are_refused_with_the_reason(name, test_models):
    with pytest.raises(RsdlError, match=re.escape(test_models[name].name)):
        algorithm_for_model(test_models[name])


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(RsdlError, match="does not exist"):
        algorithm_for_model(tmp_path / "nowhere.onnx")
