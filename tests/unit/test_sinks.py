"""classes_and_confidence against the plain numpy definition: argmax (first maximum wins) or the
threshold, the winner's probability, and nodata wherever any channel is NaN. A model's seg_thresh
works as in Deepness's MapProcessorSegmentation._process_tile: every channel below it is set to 0,
then one channel is class 1 where non-zero and several take the argmax."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.inference.sinks import classes_and_confidence


def reference(values: np.ndarray, seg_thresh: float | None, dtype: np.dtype, class_nodata: int):
    nodata = np.isnan(values).any(axis=0)
    filled = np.where(np.isnan(values), 0.0, values).astype(np.float32)
    if values.shape[0] == 1:
        classes = (filled[0] >= (0.5 if seg_thresh is None else seg_thresh)).astype(dtype)
        confidence = np.where(classes == 1, filled[0], 1.0 - filled[0]).astype(np.float32)
    else:
        # Deepness: result[result < threshold] = 0, then argmax; no key: a plain argmax
        zeroed = filled if seg_thresh is None else np.where(filled < seg_thresh, 0.0, filled)
        classes = zeroed.argmax(axis=0).astype(dtype)
        confidence = filled.max(axis=0)  # the highest probability, also where class 0 is a fallback
    classes[nodata] = class_nodata
    confidence[nodata] = np.nan
    return classes, confidence


@pytest.mark.parametrize("channels", [1, 2, 3, 7, 300])
@pytest.mark.parametrize("seed", range(5))
def test_classes_and_confidence_match_argmax_and_threshold(channels, seed):
    rng = np.random.default_rng(seed)
    values = rng.random((channels, 23, 37), dtype=np.float32)
    if seed % 2:
        values = np.round(values * 3) / 3  # many ties: the first maximum must win
    values[:, rng.random((23, 37)) < 0.2] = np.nan  # nodata in every channel (the blender's NaN)
    values[rng.random(values.shape) < 0.02] = np.nan  # and in single channels
    dtype, class_nodata = (np.dtype(np.uint16), 65535) if channels >= 255 else (np.dtype(np.uint8), 255)
    seg_thresh = (0.5, 0.0, 1.0, 1 / 3, None)[seed]
    expected_classes, expected_confidence = reference(values, seg_thresh, dtype, class_nodata)

    classes, confidence = classes_and_confidence(values, seg_thresh, dtype, class_nodata)
    assert classes.dtype == dtype and confidence.dtype == np.float32
    np.testing.assert_array_equal(classes, expected_classes)
    np.testing.assert_array_equal(confidence, expected_confidence)  # NaN where expected NaN

    only_classes, no_confidence = classes_and_confidence(
        values, seg_thresh, dtype, class_nodata, confidence=False
    )
    assert no_confidence is None
    np.testing.assert_array_equal(only_classes, expected_classes)


def test_a_carried_threshold_sends_uncertain_pixels_to_class_0():
    # channels x pixels: a confident class 2, an uncertain class 2 (0.4 < 0.5), a tie of two
    # channels at the threshold, nothing anywhere, and nodata
    values = np.array(
        [
            [0.1, 0.3, 0.1, 0.0, np.nan],
            [0.2, 0.3, 0.5, 0.0, 0.2],
            [0.7, 0.4, 0.5, 0.0, 0.2],
        ],
        dtype=np.float32,
    )[:, None, :]
    deepness, confidence = classes_and_confidence(values, 0.5, np.dtype(np.uint8), 255)
    assert deepness[0].tolist() == [2, 0, 1, 0, 255]
    np.testing.assert_allclose(confidence[0], [0.7, 0.4, 0.5, 0.0, np.nan])
    plain, same_confidence = classes_and_confidence(values, None, np.dtype(np.uint8), 255)
    assert plain[0].tolist() == [2, 2, 1, 0, 255]  # without the key: today's argmax
    np.testing.assert_array_equal(same_confidence, confidence)


def test_one_channel_without_a_threshold_uses_one_half():
    values = np.array([[[0.49, 0.5, 0.51, np.nan]]], dtype=np.float32)
    for seg_thresh in (None, 0.5):
        classes, _ = classes_and_confidence(values, seg_thresh, np.dtype(np.uint8), 255)
        assert classes[0].tolist() == [0, 1, 1, 255]
    classes, _ = classes_and_confidence(values, 0.505, np.dtype(np.uint8), 255)
    assert classes[0].tolist() == [0, 0, 1, 255]
