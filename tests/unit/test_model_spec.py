"""The model contract (core/contract/model_spec.py): metadata round trips, defaults, normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsdl_qgis_plugin.core.contract.model_spec import SPEC_VERSION, ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import ModelSpecError

FULL = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names={0: "background", 1: "building", 3: "water"},
    class_colors={0: "#000000", 1: "#e31a1c"},
    resolution_cm=30.0,
    tile_size=256,
    tiles_overlap_percent=12.5,
    standardization_mean=(0.485, 0.456, 0.406),
    standardization_std=(0.229, 0.224, 0.225),
    max_pixel_value=10000.0,
    bands=(3, 2, 1),
    seg_thresh=0.4,
    ignore_index=255,
    training={"val_miou": 0.71, "data": {"chips": 1200}},
    extra={"seg_small_segment": "7"},
)

# Metadata exactly as the peer plugin's dummy regression model carries it (ONNX metadata_props).
DEEPNESS_REGRESSOR = {
    "model_type": '"Regressor"',
    "class_names": '{"0": "_background", "1": "building", "2": "woodland", "3": "water", "4": "road"}',
    "resolution": "5.5",
    "tiles_size": "256",
    "tiles_overlap": "11",
    "seg_thresh": "0.3",
    "seg_small_segment": "13",
    "reg_output_scaling": "1.1",
    "det_conf": "0.6",
    "det_iou_thresh": "0.44",
}


def test_round_trip_through_metadata_strings():
    metadata = FULL.to_metadata()
    assert all(isinstance(v, str) for v in metadata.values())
    assert json.loads(metadata["class_names"]) == {"0": "background", "1": "building", "3": "water"}
    assert metadata["rsdl_spec_version"] == str(SPEC_VERSION)
    assert ModelSpec.from_metadata(metadata) == FULL


def test_round_trip_of_multi_head_and_unknown_type():
    spec = ModelSpec.from_metadata(
        {"model_type": '"Regression"', "class_names": '[{"0": "Coffee", "1": "Tea"}, {"0": "Juice"}]'}
    )
    assert spec.model_type is ModelType.UNKNOWN
    assert spec.declared_model_type == "Regression"
    assert spec.class_names == {0: "Coffee", 1: "Tea"}
    assert spec.more_head_class_names == ({0: "Juice"},)
    metadata = spec.to_metadata()
    assert metadata["model_type"] == '"Regression"'
    assert json.loads(metadata["class_names"]) == [{"0": "Coffee", "1": "Tea"}, {"0": "Juice"}]
    assert ModelSpec.from_metadata(metadata) == spec


def test_missing_keys_take_documented_defaults():
    spec = ModelSpec.from_metadata({})
    assert spec.model_type is ModelType.SEGMENTOR
    assert spec.class_names == {} and spec.class_colors == {} and spec.head_class_names == ()
    assert spec.resolution_cm is None and spec.tile_size is None and spec.tiles_overlap_percent is None
    assert spec.standardization_mean == (0.0,) and spec.standardization_std == (1.0,)
    assert spec.max_pixel_value == 255.0
    assert spec.bands is None and spec.ignore_index is None
    # no seg_thresh: one channel at 0.5, several by plain argmax; and none is written back
    assert spec.seg_thresh is None and spec.one_channel_threshold == 0.5
    assert "seg_thresh" not in spec.to_metadata()
    assert spec.spec_version == 0  # not written by rsdl
    assert spec.training == {} and spec.extra == {}
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec


def test_deepness_keys_are_read_and_written_back():
    spec = ModelSpec.from_metadata(DEEPNESS_REGRESSOR)
    assert spec.model_type is ModelType.REGRESSOR
    assert spec.class_names[4] == "road"
    assert spec.resolution_cm == 5.5
    assert spec.tile_size == 256  # from "tiles_size"
    assert spec.tiles_overlap_percent == 11
    assert spec.seg_thresh == spec.one_channel_threshold == 0.3
    # A regressor may carry Deepness's detection keys: read (not refused) and written back.
    assert spec.det_conf == 0.6 and spec.det_iou_thresh == 0.44 and spec.det_type is None
    assert spec.extra == {"seg_small_segment": "13", "reg_output_scaling": "1.1"}
    metadata = spec.to_metadata()
    assert metadata["tile_size"] == metadata["tiles_size"] == "256"  # both Deepness spellings
    assert metadata["tiles_overlap"] == "11"  # Deepness reads it with int()
    assert {k: metadata[k] for k in spec.extra} == spec.extra
    assert (metadata["det_conf"], metadata["det_iou_thresh"]) == ("0.6", "0.44")
    assert ModelSpec.from_metadata(metadata) == spec


def test_tile_size_wins_over_tiles_size():
    assert ModelSpec.from_metadata({"tile_size": "128", "tiles_size": "256"}).tile_size == 128


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"0": "a", "1": "b"}', {0: "a", 1: "b"}),
        ('["a", "b"]', {0: "a", 1: "b"}),
        ("{0: 'a', 1: 'b'}", {0: "a", 1: "b"}),  # Python literal with int keys (Deepness reads it)
        ('[{"0": "a", "1": "b"}]', {0: "a", 1: "b"}),
    ],
)
def test_class_name_forms(text, expected):
    assert ModelSpec.from_metadata({"class_names": text}).class_names == expected


def test_names_key_and_plain_strings_are_tolerated():
    spec = ModelSpec.from_metadata({"names": '{"0": "car"}', "model_type": "segmentor", "resolution": "3"})
    assert spec.class_names == {0: "car"}
    assert spec.model_type is ModelType.SEGMENTOR  # unquoted and lower case
    assert spec.resolution_cm == 3.0
    spec = ModelSpec.from_metadata({"standardization_mean": "0.5, 0.25", "standardization_std": "[0.5 0.5]"})
    assert spec.standardization_mean == (0.5, 0.25) and spec.standardization_std == (0.5, 0.5)


def test_values_already_decoded_are_accepted():
    """A TorchScript spec file may hold plain JSON values rather than JSON-encoded strings."""
    spec = ModelSpec.from_metadata({"tile_size": 64, "class_names": {"0": "x"}, "bands": [1, 2, 3]})
    assert spec.tile_size == 64 and spec.class_names == {0: "x"} and spec.bands == (1, 2, 3)


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"resolution": '"abc"'}, "resolution"),
        ({"tile_size": "12.5"}, "tile_size"),
        ({"class_names": '"just text"'}, "class_names"),
        ({"class_names": '{"one": "a"}'}, "class_names"),
        ({"class_colors": '{"0": "red"}'}, "class_colors"),
        ({"standardization_std": "[1, 0, 1]"}, "standardization_std"),
        ({"tiles_overlap": "150"}, "tiles_overlap"),
        ({"training": "[1, 2]"}, "training"),
        ({"bands": "[0, 1]"}, "bands"),
        ({"rsdl_spec_version": str(SPEC_VERSION + 1)}, "rsdl_spec_version"),
    ],
)
def test_bad_values_name_the_key(metadata, key):
    with pytest.raises(ModelSpecError, match=key):
        ModelSpec.from_metadata(metadata)


def test_normalize_matches_a_hand_computation():
    spec = ModelSpec(standardization_mean=(0.5, 0.25, 0.0), standardization_std=(0.25, 0.5, 2.0))
    pixels = np.array([[[[0, 255]], [[51, 102]], [[255, 0]]]], dtype=np.uint8)  # (1, 3, 1, 2)
    out = spec.normalize(pixels)
    assert out.dtype == np.float32 and out.shape == pixels.shape
    # channel 0: (0/255 - 0.5)/0.25 = -2, (1 - 0.5)/0.25 = 2; channel 1: (0.2 - 0.25)/0.5 = -0.1,
    # (0.4 - 0.25)/0.5 = 0.3; channel 2: (1 - 0)/2 = 0.5, 0.
    expected = [[[[-2.0, 2.0]], [[-0.1, 0.3]], [[0.5, 0.0]]]]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert pixels[0, 0, 0, 1] == 255  # input untouched


def test_normalize_16_bit_with_one_value_for_all_channels():
    spec = ModelSpec(max_pixel_value=10000, standardization_mean=(0.1,), standardization_std=(0.2,))
    pixels = np.full((2, 4, 3, 3), 5000, dtype=np.uint16)
    np.testing.assert_allclose(spec.normalize(pixels), (0.5 - 0.1) / 0.2, rtol=1e-6)


def test_normalize_refuses_a_wrong_channel_count():
    spec = ModelSpec(standardization_mean=(0.1, 0.2, 0.3), standardization_std=(1.0,))
    with pytest.raises(
        ModelSpecError, match="'standardization_mean' has 3 values but the input has 4 channels"
    ):
        spec.normalize(np.zeros((1, 4, 2, 2), dtype=np.uint8))


def test_class_name_fallback_per_head():
    spec = ModelSpec(class_names={0: "background"}, more_head_class_names=({1: "tree"},))
    assert spec.class_name(0) == "background"
    assert spec.class_name(5) == "class_5"
    assert spec.class_name(1, head=1) == "tree"
    assert spec.class_name(0, head=1) == "class_0"
    assert spec.class_name(0, head=7) == "class_0"


def test_detector_keys_round_trip_as_deepness_writes_them():
    metadata = {
        "model_type": '"Detector"',
        "det_conf": "0.3",
        "det_iou_thresh": "0.5",
        "det_type": '"YOLO_Ultralytics_obb"',
        "class_names": '{"0": "plane", "1": "ship"}',
    }
    spec = ModelSpec.from_metadata(metadata)
    assert spec.model_type is ModelType.DETECTOR
    assert (spec.det_conf, spec.det_iou_thresh, spec.det_type) == (0.3, 0.5, "YOLO_Ultralytics_obb")
    assert spec.extra == {}
    written = spec.to_metadata()
    assert {k: json.loads(written[k]) for k in ("det_conf", "det_iou_thresh", "det_type")} == {
        "det_conf": 0.3,
        "det_iou_thresh": 0.5,
        "det_type": "YOLO_Ultralytics_obb",
    }
    assert ModelSpec.from_metadata(written) == spec
    # Without the keys nothing is written, so other models' metadata stays as it was.
    assert not {"det_conf", "det_iou_thresh", "det_type"} & set(ModelSpec().to_metadata())


def test_instance_segmentor_type_and_det_type_spelling():
    spec = ModelSpec.from_metadata({"model_type": "instancesegmentor", "det_type": "yolo_v9"})
    assert spec.model_type is ModelType.INSTANCE_SEGMENTOR
    assert spec.det_type == "YOLO_v9"  # Deepness's spelling, whatever the case written
    assert json.loads(spec.to_metadata()["model_type"]) == "InstanceSegmentor"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"det_conf": "1.5"}, r"'det_conf' must lie between 0 and 1, got 1.5"),
        ({"det_iou_thresh": "-0.1"}, r"'det_iou_thresh' must lie between 0 and 1, got -0.1"),
        ({"det_conf": '"high"'}, r"'det_conf' has the value 'high'"),
        ({"det_type": '"YOLO_v12"'}, r"'YOLO_v12'.*YOLO_v5_or_v7_default, YOLO_v6, YOLO_v9, "
         r"YOLO_Ultralytics, YOLO_Ultralytics_segmentation, YOLO_Ultralytics_obb"),
    ],
)  # fmt: skip
def test_bad_detector_keys_are_refused(metadata, message):
    with pytest.raises(ModelSpecError, match=message):
        ModelSpec.from_metadata(metadata)


@pytest.mark.parametrize(
    ("version", "written", "read"),
    [
        ("1", "0.5", None),  # rsdl 1 wrote its default into every file: not a choice
        ("1", "0.3", 0.3),
        ("2", "0.5", 0.5),
        (None, "0.5", 0.5),  # Deepness (no rsdl version): always the model's choice
    ],
)
def test_seg_thresh_written_by_rsdl_spec_version_1_as_its_default_reads_as_absent(version, written, read):
    metadata = {"seg_thresh": written, "model_type": '"Segmentor"'}
    if version is not None:
        metadata["rsdl_spec_version"] = version
    assert ModelSpec.from_metadata(metadata).seg_thresh == read
