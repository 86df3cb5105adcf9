"""rsdl:modelinfo in QGIS (pytest-qgis), run through processing.run from a test provider."""

from __future__ import annotations

import json

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingProvider,
)

from rsdl_qgis_plugin.core.contract.model_spec import SPEC_VERSION
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.processing_provider.model_info import ModelInfoAlgorithm
from scripts.make_test_models import write_test_models
from tests.log_feedback import LogFeedback

PROVIDER_ID = "rsdltestmodelinfo"
ALG = f"{PROVIDER_ID}:modelinfo"
_KEEP_ALIVE = []  # the registry does not own Python providers


class _ModelInfoProvider(QgsProcessingProvider):
    """Registers the algorithm on its own, independent of the rsdl provider's list."""

    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "rsdl model info (tests)"

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(ModelInfoAlgorithm())


@pytest.fixture(scope="module")
def run_model_info(run_processing):
    registry = QgsApplication.processingRegistry()
    if registry.providerById(PROVIDER_ID) is None:
        provider = _ModelInfoProvider()
        registry.addProvider(provider)
        _KEEP_ALIVE.append(provider)

    def run(parameters):
        log = LogFeedback()
        return run_processing(ALG, parameters, log), "\n".join(log.lines)

    return run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_test_models(tmp_path_factory.mktemp("models"))


def test_deepness_two_head_model(run_model_info, shared_data, tmp_path):
    model = (
        shared_data / "deepness_peer/models/dummy_segmentation_models/two_outputs_softmax_bsx2x512x512.onnx"
    )
    report = tmp_path / "report.html"
    result, log = run_model_info({"MODEL": str(model), "OUTPUT_HTML": str(report)})
    assert result["MODEL_TYPE"] == "Segmentor"
    assert json.loads(result["INPUT_SHAPE"]) == [None, 3, 512, 512]
    assert json.loads(result["OUTPUT_SHAPES"]) == [[None, 2, 512, 512], [None, 2, 512, 512]]
    classes = [(c["head"], c["value"], c["name"]) for c in json.loads(result["CLASSES"])]
    assert classes == [(0, 0, "Coffee"), (0, 1, "Tea"), (1, 0, "Juice"), (1, 1, "Beer")]
    assert "Execution provider: CPUExecutionProvider" in log or "CUDAExecutionProvider" in log
    assert "rsdl spec version: none" in log
    assert result["OUTPUT_HTML"] == str(report)
    page = report.read_text(encoding="utf-8")
    assert "<h2>Classes</h2>" in page and "Juice" in page
    assert leftover_temporaries(tmp_path) == []


def test_deepness_unknown_keys_and_unrunnable_type(run_model_info, shared_data):
    models = shared_data / "deepness_peer/models"
    result, log = run_model_info(
        {"MODEL": str(models / "dummy_regression_models/dummy_regression_model.onnx")}
    )
    assert result["MODEL_TYPE"] == "Regressor"
    assert "reg_output_scaling: 1.1" in log  # kept Deepness key, listed as not used
    assert "Tile size: 512 px (fixed by the model's input; its metadata says 256)" in log
    assert "Resolution: 5.5 cm/px (0.055 m)" in log
    result, log = run_model_info({"MODEL": str(models / "dummy_recognition_model.onnx")})
    assert result["MODEL_TYPE"] == "Regression"  # as declared (no Deepness type has that name)
    assert "rsdl does not run this type" in log


def test_our_segmentation_model(run_model_info, models):
    result, log = run_model_info({"MODEL": str(models["fcn_seg.onnx"])})
    assert result["MODEL_TYPE"] == "Segmentor"
    assert json.loads(result["INPUT_SHAPE"]) == [None, 3, None, None]
    assert json.loads(result["OUTPUT_SHAPES"]) == [[None, 3, None, None]]
    assert json.loads(result["CLASSES"]) == [
        {"head": 0, "value": 0, "name": "background", "color": "#000000"},
        {"head": 0, "value": 1, "name": "building", "color": "#e31a1c"},
        {"head": 0, "value": 2, "name": "water", "color": "#1f78b4"},
    ]
    assert "Expected bands: 1, 2, 3" in log
    assert "mean: 0.485, 0.456, 0.406" in log and "max_pixel_value: 255 (8-bit imagery)" in log
    assert f"rsdl spec version: {SPEC_VERSION}" in log
    assert not result.get("OUTPUT_HTML")


def test_model_without_names_lists_its_channels(run_model_info, models):
    result, _log = run_model_info({"MODEL": str(models["fcn_no_metadata.onnx"])})
    assert [c["name"] for c in json.loads(result["CLASSES"])] == ["class_0", "class_1", "class_2"]


def test_pickle_is_refused(run_model_info, models):
    with pytest.raises(QgsProcessingException, match="never unpickles"):
        run_model_info({"MODEL": str(models["evil.pth"])})
