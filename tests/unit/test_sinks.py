"""classes_and_confidence against the plain numpy definition: argmax (first maximum wins) or the
threshold, the winner's probability, and nodata wherever any channel is NaN."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.inference.sinks import classes_and_confidence


def reference(values: np.ndarray, seg_thresh: float, dtype: np.dtype, class_nodata: int):
    nodata = np.isnan(values).any(axis=0)
    filled = np.where(np.isnan(values), 0.0, values).astype(np.float32)
    if values.shape[0] == 1:
        classes = (filled[0] >= seg_thresh).astype(dtype)
        confidence = np.where(classes == 1, filled[0], 1.0 - filled[0]).astype(np.float32)
    else:
        classes = filled.argmax(axis=0).astype(dtype)
        confidence = filled.max(axis=0)
    classes[nodata] = class_nodata
    confidence[nodata] = np.nan
    return classes, confidence


@pytest.mark.parametrize("channels", [1, 2, 3, 7, 300])
@pytest.mark.parametrize("seed", range(4))
def test_classes_and_confidence_match_argmax_and_threshold(channels, seed):
    rng = np.random.default_rng(seed)
    values = rng.random((channels, 23, 37), dtype=np.float32)
    if seed % 2:
        values = np.round(values * 3) / 3  # many ties: the first maximum must win
    values[:, rng.random((23, 37)) < 0.2] = np.nan  # nodata in every channel (the blender's NaN)
    values[rng.random(values.shape) < 0.02] = np.nan  # and in single channels
    dtype, class_nodata = (np.dtype(np.uint16), 65535) if channels >= 255 else (np.dtype(np.uint8), 255)
    seg_thresh = (0.5, 0.0, 1.0, 1 / 3)[seed]
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
