"""The registry of model types (core/contract/model_types.py): which tool runs what, and its refusals."""

from __future__ import annotations

import json

import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.contract.model_types import (
    MODEL_TYPE_ROLES,
    RUNNABLE_MODEL_TYPES,
    refuse_unless_run_by,
    role_of,
)
from rsdl_qgis_plugin.core.errors import ModelSpecError


def test_every_runnable_type_names_its_tools_and_layouts():
    assert {
        ModelType.SEGMENTOR,
        ModelType.CLASSIFIER,
        ModelType.REGRESSOR,
        ModelType.DETECTOR,
        ModelType.INSTANCE_SEGMENTOR,
    } == RUNNABLE_MODEL_TYPES
    for model_type, role in MODEL_TYPE_ROLES.items():
        assert role.model_type is model_type and role.tools and role.head_layouts
    assert role_of(ModelType.RECOGNITION) is None


@pytest.mark.parametrize("model_type", [ModelType.DETECTOR, ModelType.INSTANCE_SEGMENTOR])
def test_detectors_are_objects_not_maps(model_type):
    role = role_of(model_type)
    assert role.tools == ("rsdl:detect", "python -m training predict")
    assert not role.class_scores and not role.per_pixel
    assert (role.default_tile_size, role.default_batch_size) == (640, 4)
    for layout in ("[B, N, 5 + classes]", "[B, 4 + classes, N]", "prototypes", "angle", "boxes [B, N, 4]"):
        assert layout in role.head_layouts


@pytest.mark.parametrize(
    ("model_type", "tool"),
    [
        (ModelType.SEGMENTOR, "rsdl:segment"),
        (ModelType.REGRESSOR, "rsdl:segment"),
        (ModelType.REGRESSOR, "python -m training predict"),
        (ModelType.CLASSIFIER, "rsdl:classifytiles"),
        (ModelType.CLASSIFIER, "rsdl:classifyfeatures"),
        (ModelType.DETECTOR, "rsdl:detect"),
        (ModelType.INSTANCE_SEGMENTOR, "rsdl:detect"),
        (ModelType.DETECTOR, "python -m training predict"),
        (ModelType.INSTANCE_SEGMENTOR, "python -m training predict"),
    ],
)
def test_a_tool_runs_the_types_it_is_registered_for(model_type, tool):
    refuse_unless_run_by(ModelSpec(model_type=model_type), tool)


@pytest.mark.parametrize(
    ("model_type", "tool", "message"),
    [
        (ModelType.CLASSIFIER, "rsdl:segment", r"'m.onnx' is a 'Classifier' .*rsdl:segment runs Segmentor "
         r"and Regressor models\. Use rsdl:classifytiles or rsdl:classifyfeatures"),
        (ModelType.REGRESSOR, "rsdl:classifytiles", r"runs Classifier models\. Use rsdl:segment"),
        (ModelType.DETECTOR, "rsdl:segment", r"'Detector' .*Use rsdl:detect or python -m training "
         r"predict for Detector models"),
        (ModelType.INSTANCE_SEGMENTOR, "rsdl:segment", r"Use rsdl:detect or python -m training predict "
         r"for InstanceSegmentor models"),
        (ModelType.DETECTOR, "rsdl:classifytiles", r"runs Classifier models\. Use rsdl:detect"),
        (ModelType.INSTANCE_SEGMENTOR, "rsdl:classifyfeatures", r"Use rsdl:detect"),
        (ModelType.CLASSIFIER, "python -m training predict", r"runs Segmentor, Regressor, Detector and "
         r"InstanceSegmentor models\. Use rsdl:classifytiles"),
        (ModelType.SEGMENTOR, "rsdl:detect", r"rsdl:detect runs Detector and InstanceSegmentor models\. "
         r"Use rsdl:segment"),
        (ModelType.UNKNOWN, "rsdl:classifyfeatures", r"no tool for"),
    ],
)  # fmt: skip
def test_other_types_are_refused_with_the_tool_that_runs_them(model_type, tool, message):
    with pytest.raises(ModelSpecError, match=message):
        refuse_unless_run_by(ModelSpec(model_type=model_type), tool, "m.onnx")


def test_an_undeclared_model_may_run_where_its_outputs_decide():
    undeclared = ModelSpec()  # Segmentor, as a model without metadata reads
    refuse_unless_run_by(undeclared, "rsdl:classifytiles", undeclared_ok=True)
    with pytest.raises(ModelSpecError):
        refuse_unless_run_by(undeclared, "rsdl:classifytiles")


@pytest.mark.parametrize("declared", ["Recognition", "Superresolution", "Regression"])
def test_types_rsdl_does_not_run_are_read_then_refused(declared):
    spec = ModelSpec.from_metadata({"model_type": json.dumps(declared)})
    assert spec.declared_model_type == declared
    with pytest.raises(ModelSpecError, match=f"'{declared}'.*no tool for {declared}"):
        refuse_unless_run_by(spec, "rsdl:segment")
    refuse_unless_run_by(ModelSpec.from_metadata({"model_type": '"Classifier"'}), "rsdl:classifytiles")
