"""The nodata rule on arrays: a pixel is nodata when any band read is nodata."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.raster.nodata import (
    any_band_nodata,
    band_nodata,
    nodata_pixels,
    valid_pixels,
    zero_non_finite,
)

NAN, INF = float("nan"), float("inf")


def test_band_value_equal_to_its_nodata_is_nodata():
    values = np.array([[0, 5], [255, 5]], dtype=np.uint8)
    assert band_nodata(values, 5).tolist() == [[False, True], [False, True]]
    assert band_nodata(values, 255.0).tolist() == [[False, False], [True, False]]
    assert not band_nodata(values, None).any()
    assert not band_nodata(values, -9999.0).any()  # outside the type's range: never matches


def test_nan_nodata_matches_nan_and_non_finite_is_always_nodata():
    values = np.array([1.5, NAN, INF, -INF, -9999.0], dtype=np.float32)
    assert band_nodata(values, NAN).tolist() == [False, True, True, True, False]
    assert band_nodata(values, -9999.0).tolist() == [False, True, True, True, True]
    assert band_nodata(values, None).tolist() == [False, True, True, True, False]
    assert not band_nodata(np.array([0, 1], dtype=np.int16), NAN).any()  # integers hold no NaN


def test_zero_in_the_mask_is_nodata():
    values = np.array([3, 4, 5], dtype=np.uint16)
    mask = np.array([255, 0, 255], dtype=np.uint8)
    assert band_nodata(values, 5, mask).tolist() == [False, True, True]
    assert band_nodata(None, mask=mask).tolist() == [False, True, False]  # a GDAL mask alone
    with pytest.raises(ValueError):
        band_nodata(None)


def test_any_band_nodata_makes_the_pixel_nodata():
    # 3 bands, each with its own nodata value; pixel k is nodata in band k only, pixel 3 in all,
    # pixel 4 in none.
    bands = np.array(
        [
            [10, 1, 1, 10, 1],
            [2, 20, 2, 20, 2],
            [3, 3, 30, 30, 3],
        ],
        dtype=np.uint8,
    )[:, None, :]
    nodata = [10, 20, 30]
    expected = np.array([[True, True, True, True, False]])
    assert np.array_equal(nodata_pixels(bands, nodata), expected)
    assert np.array_equal(valid_pixels(bands, nodata), ~expected)
    # only the bands read count: band 1 alone
    assert nodata_pixels(bands[:1], nodata[:1]).tolist() == [[True, False, False, True, False]]


def test_bands_of_different_types_and_a_band_without_nodata():
    integers = np.array([[0, 7, 7, 7]], dtype=np.int32)  # nodata 0
    floats = np.array([[1.0, NAN, 2.0, 2.0]], dtype=np.float64)  # NaN nodata
    plain = np.array([[9, 9, 9, 0]], dtype=np.uint8)  # no nodata: never nodata
    nodata = nodata_pixels([integers, floats, plain], [0, NAN, None])
    assert nodata.tolist() == [[True, True, False, False]]
    no_value_float = np.array([[1.0, INF, 2.0, 2.0]], dtype=np.float32)  # non-finite without nodata
    assert nodata_pixels([plain, no_value_float], [None, None]).tolist() == [[False, True, False, False]]
    assert not nodata_pixels([plain], [None]).any()


def test_masks_go_per_band():
    bands = np.ones((2, 1, 3), dtype=np.uint8)
    masks = [np.array([[255, 0, 255]]), None]
    assert nodata_pixels(bands, [None, None], masks).tolist() == [[False, True, False]]
    assert nodata_pixels([None, bands[1]], [None, 1], [np.array([[0, 1, 1]]), None]).tolist() == [
        [True, True, True]
    ]


def test_mismatched_lengths_and_no_band_are_refused():
    with pytest.raises(ValueError):
        nodata_pixels(np.ones((2, 1, 1)), [None])
    with pytest.raises(ValueError):
        nodata_pixels(np.ones((1, 1, 1)), [None], [None, None])
    with pytest.raises(ValueError):
        any_band_nodata([])


def test_any_band_nodata_does_not_change_its_inputs():
    first, second = np.array([True, False]), np.array([False, False])
    assert any_band_nodata([first, second]).tolist() == [True, False]
    assert first.tolist() == [True, False] and second.tolist() == [False, False]


def test_zero_non_finite_in_place():
    data = np.array([1.0, NAN, INF, -INF], dtype=np.float32)
    assert zero_non_finite(data) is data
    assert data.tolist() == [1.0, 0.0, 0.0, 0.0]
    integers = np.array([1, 2], dtype=np.int16)
    assert zero_non_finite(integers).tolist() == [1, 2]
