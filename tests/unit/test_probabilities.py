"""Model outputs as probabilities (inference/probabilities.py): softmax against scipy's, and the
unit-range test that decides whether outputs are probabilities already."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rsdl_qgis_plugin.inference.probabilities import in_unit_range, softmax

special = pytest.importorskip("scipy.special", reason="scipy's softmax is the oracle")


@pytest.mark.parametrize("shape", [(1, 2), (5, 7), (3, 4, 9, 11), (2, 1, 6, 6)])
def test_softmax_equals_scipys_over_the_class_axis(shape):
    logits = np.random.default_rng(sum(shape)).normal(0.0, 4.0, shape)
    np.testing.assert_allclose(softmax(logits), special.softmax(logits, axis=1), rtol=1e-12, atol=0)


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
        elements=st.floats(-1e4, 1e4, width=32),
    )
)
def test_softmax_of_any_float32_logits_is_scipys_and_a_distribution(logits):
    result = softmax(logits)
    assert result.dtype == np.float32 and result.shape == logits.shape
    assert np.isfinite(result).all() and (result >= 0).all()  # large logits must not overflow
    np.testing.assert_allclose(result.sum(axis=1), 1.0, rtol=1e-5)
    expected = special.softmax(logits.astype(np.float64), axis=1)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_softmax_keeps_the_order_and_ignores_a_shift():
    logits = np.array([[1.0, 3.0, 2.0], [1000.0, 1002.0, 1001.0]])
    result = softmax(logits)
    np.testing.assert_allclose(result[0], result[1])  # same differences, same probabilities
    assert (np.argmax(result, axis=1) == np.argmax(logits, axis=1)).all()
    assert logits[1, 0] == 1000.0  # the input is not shifted in place


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 1.0], True),  # the bounds belong to the range
        ([0.25, 0.5, 0.75], True),
        ([-1e-7, 0.5], False),
        ([0.5, 1.0 + 1e-6], False),
        ([3.2, -1.5], False),  # logits
        ([0.5, np.nan], False),  # a NaN is no probability
    ],
)
def test_in_unit_range(values, expected):
    result = in_unit_range(np.array(values, dtype=np.float32))
    assert result is expected
