"""Per-class pixel counts and suggested weights (core/metrics/class_statistics.py), against numpy's
bincount over the whole mask and scikit-learn's 'balanced' class weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics


def whole_mask_counts(mask: np.ndarray, ignore: int) -> dict[int, int]:
    """The oracle: one bincount over the whole mask, the ignore value left out."""
    counts = np.bincount(mask.ravel().astype(np.int64))
    return {value: int(counts[value]) for value in np.flatnonzero(counts) if value != ignore}


def balanced_weights(labels: np.ndarray, classes: list[int]) -> dict[int, float]:
    """scikit-learn's compute_class_weight('balanced') where it is installed, else its formula
    n_samples / (n_classes * bincount(y)) written out."""
    try:
        from sklearn.utils.class_weight import compute_class_weight
    except ImportError:
        return {c: labels.size / (len(classes) * int((labels == c).sum())) for c in classes}
    weights = compute_class_weight("balanced", classes=np.array(classes), y=labels)
    return dict(zip(classes, weights.tolist()))


def statistics_by_blocks(mask: np.ndarray, ignore: int, cuts: list[int]) -> ClassStatistics:
    statistics = ClassStatistics(ignore)
    for block in np.split(mask, sorted(set(cuts)), axis=0):
        statistics.add_block(np.ascontiguousarray(block))
    return statistics


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.uint32, np.int16, np.int32, np.int64]),
    classes=st.integers(1, 12),
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    ignore_share=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_counts_block_by_block_equal_bincount_over_the_whole_mask(
    dtype, classes, rows, cols, ignore_share, seed, data
):
    rng = np.random.default_rng(seed)
    ignore = 255  # every dtype drawn holds it; the bincount path must skip it too
    mask = rng.integers(0, classes, (rows, cols)).astype(dtype)
    mask[rng.random((rows, cols)) < ignore_share] = ignore
    cuts = data.draw(st.lists(st.integers(0, rows), max_size=5), label="cuts")

    statistics = statistics_by_blocks(mask, ignore, cuts)

    assert statistics.counts == whole_mask_counts(mask, ignore)
    assert statistics.ignored == int((mask == ignore).sum())
    assert ignore not in statistics.counts
    assert statistics.labelled_pixels + statistics.ignored == mask.size
    assert all(type(v) is int and type(c) is int for v, c in statistics.counts.items())


def test_wide_values_and_a_negative_ignore_take_the_unique_path_alike():
    rng = np.random.default_rng(3)
    narrow = rng.integers(0, 5, (30, 20)).astype(np.uint8)
    narrow[:3] = 4  # 4 is the ignore value of the narrow mask
    wide = ClassStatistics(ignore_value=70_004)
    wide.add_block(narrow.astype(np.uint32) + np.uint32(70_000))
    expected = whole_mask_counts(narrow, 4)
    assert wide.counts == {value + 70_000: count for value, count in expected.items()}
    # training counts torch's int64 targets, whose ignore index is -100
    target = np.where(narrow == 4, -100, narrow.astype(np.int64))  # int64 first: -100 fits
    signed = ClassStatistics(ignore_value=-100)
    signed.add_block(target)
    assert signed.counts == expected and signed.ignored == int((narrow == 4).sum())


def test_merge_equals_counting_both_masks():
    rng = np.random.default_rng(11)
    first, second = rng.integers(0, 6, (2, 25, 25)).astype(np.uint8)
    merged = statistics_by_blocks(first, 5, [7])
    merged.merge(statistics_by_blocks(second, 5, [3, 20]))
    assert merged.counts == whole_mask_counts(np.concatenate([first, second]), 5)
    assert merged.ignored == int((first == 5).sum() + (second == 5).sum())


def test_suggested_weights_are_sklearns_balanced_weights():
    rng = np.random.default_rng(5)
    mask = rng.choice([0, 1, 2, 7, 255], size=(60, 50), p=[0.6, 0.25, 0.1, 0.03, 0.02]).astype(np.uint8)
    statistics = statistics_by_blocks(mask, 255, [13, 40])
    labels = mask[mask != 255]
    expected = balanced_weights(labels, [0, 1, 2, 7])

    weights = statistics.suggested_weights([0, 1, 2, 7, 9])  # 9: named but absent

    assert weights[9] == 0.0
    assert {v: weights[v] for v in expected} == pytest.approx(expected, rel=1e-12)
    # balanced weights make every present class weigh the same in total
    totals = [weights[v] * statistics.counts[v] for v in expected]
    assert totals == pytest.approx([labels.size / 4] * 4)


def test_as_table_rows_hold_names_shares_and_rounded_weights():
    statistics = ClassStatistics(ignore_value=255)
    statistics.add_block(np.array([[0, 0, 0, 1, 1, 3, 255]], dtype=np.uint8))
    table = statistics.as_table({0: "background", 1: "building", 2: "water"})
    assert [row["value"] for row in table] == [0, 1, 2, 3]  # named or counted, sorted
    assert [row["name"] for row in table] == ["background", "building", "water", "3"]
    assert [row["pixels"] for row in table] == [3, 2, 0, 1]
    assert sum(row["share"] for row in table) == pytest.approx(1.0)
    assert table[1]["share"] == pytest.approx(2 / 6)
    # 6 labelled pixels over 3 present classes: 6 / (3 * count), rounded to 6 digits
    assert [row["weight"] for row in table] == [round(6 / 9, 6), 1.0, 0.0, 2.0]
    assert ClassStatistics(0).as_table({1: "a"}) == [
        {"value": 1, "name": "a", "pixels": 0, "share": 0.0, "weight": 0.0}
    ]


def test_class_statistics_counts_and_balanced_weights():
    statistics = ClassStatistics(ignore_value=255)
    statistics.add_block(np.array([[0, 0, 0, 1], [1, 2, 255, 255]], dtype=np.uint8))
    statistics.add_block(np.array([[2, 2]], dtype=np.uint16))
    assert statistics.counts == {0: 3, 1: 2, 2: 3}
    assert statistics.ignored == 2
    weights = statistics.suggested_weights([0, 1, 2, 3])
    # sklearn's 'balanced' rule: n_samples / (n_classes * count); an absent class gets 0.
    assert weights == pytest.approx({0: 8 / 9, 1: 8 / 6, 2: 8 / 9, 3: 0.0})
    wide = ClassStatistics(ignore_value=70000)
    wide.add_block(np.array([70000, 66000, 66000], dtype=np.uint32))
    assert wide.counts == {66000: 2} and wide.ignored == 1
