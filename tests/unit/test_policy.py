"""The tile size and overlap policy (core/tiling/policy.py) that every tiling tool shares."""

from __future__ import annotations

import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import ModelError
from rsdl_qgis_plugin.core.tiling.policy import (
    DEFAULT_OVERLAP_PERCENT,
    default_batch_size,
    default_tile_size,
    overlap_pixels,
    tile_size,
)

CLASSIFIER = ModelSpec(model_type=ModelType.CLASSIFIER, tile_size=48)


def test_a_fixed_input_wins_then_the_user_then_the_metadata_then_the_type_default():
    assert tile_size(CLASSIFIER, (32, 32), None) == 32
    assert tile_size(CLASSIFIER, (32, 32), 32) == 32
    assert tile_size(CLASSIFIER, (None, None), None) == 48
    assert tile_size(CLASSIFIER, (None, None), 64) == 64
    assert tile_size(ModelSpec(model_type=ModelType.CLASSIFIER), (None, None), None) == 224
    assert tile_size(ModelSpec(model_type=ModelType.SEGMENTOR), (None, None), None) == 512
    assert tile_size(ModelSpec(model_type=ModelType.REGRESSOR), (None, None), None) == 512


def test_the_default_is_that_of_the_type_the_tool_runs_the_model_as():
    undeclared = ModelSpec()  # what a model without metadata reads as: Segmentor
    assert tile_size(undeclared, (None, None), None) == 512
    assert tile_size(undeclared, (None, None), None, run_as=ModelType.CLASSIFIER) == 224


def test_refusals_name_the_setting_and_the_model():
    with pytest.raises(ModelError, match=r"'m.onnx' takes 32 x 32 .*--tile-size 64 cannot be used"):
        tile_size(CLASSIFIER, (32, 32), 64, parameter="--tile-size", model_name="m.onnx")
    with pytest.raises(ModelError, match="non-square 32 x 48"):
        tile_size(CLASSIFIER, (32, 48), None)


@pytest.mark.parametrize(
    ("asked", "metadata", "tile", "expected"),
    [
        (None, None, 512, round(512 * DEFAULT_OVERLAP_PERCENT / 100)),
        (None, 25.0, 512, 128),
        (10.0, 25.0, 512, 51),  # the user's wins: round(51.2)
        (0.0, 25.0, 512, 0),
        (90.0, None, 8, 7),  # kept below the tile
    ],
)
def test_overlap_in_pixels(asked, metadata, tile, expected):
    spec = ModelSpec(tiles_overlap_percent=metadata)
    assert overlap_pixels(spec, tile, asked) == expected


def test_unrun_types_fall_back_to_the_segmentor_defaults():
    assert default_tile_size(ModelType.RECOGNITION) == default_tile_size(ModelType.SEGMENTOR)
    assert default_tile_size(ModelType.DETECTOR) == 640  # YOLO's input size
    assert default_batch_size(ModelType.UNKNOWN) == default_batch_size(ModelType.SEGMENTOR) == 4
    assert default_batch_size(ModelType.CLASSIFIER) == 16
