"""Per-feature probabilities between rsdl:classifyfeatures' passes (QGIS-free): looked up by id
whatever the order they came in, NaN for features never classified, cancel between batches."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import CancelledError
from rsdl_qgis_plugin.inference.classifier import Classifier
from rsdl_qgis_plugin.inference.feature_results import FeatureResults, collect_probabilities

SPEC = ModelSpec(model_type=ModelType.CLASSIFIER, class_names={0: "intact", 1: "damaged", 2: "gone"})


class MeanScores:
    """A stand-in backend whose logits are each crop's band means: the crop decides the class."""

    input_channels = 3
    input_size = (None, None)
    spec = SPEC

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batches.append(len(batch))
        return [batch.mean(axis=(2, 3)).astype(np.float32)]


def test_probabilities_are_found_by_id_in_any_order():
    results = FeatureResults(3)
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(0, 2000, 2))  # even ids, shuffled
    probabilities = rng.random((len(ids), 3)).astype(np.float32)
    for start in range(0, len(ids), 64):  # in batches, as the first pass adds them
        results.add(ids[start : start + 64], probabilities[start : start + 64])
    for position in (0, 1, 500, len(ids) - 1):
        np.testing.assert_array_equal(results.get(int(ids[position])), probabilities[position])
    assert np.isnan(results.get(7)).all() and results.get(7).shape == (3,)  # odd: never classified
    assert np.isnan(results.get(-1)).all() and np.isnan(results.get(10**12)).all()


def test_adding_after_a_lookup_is_seen():
    results = FeatureResults(2)
    results.add(np.array([5]), np.array([[0.25, 0.75]]))
    assert np.isnan(results.get(3)).all()
    results.add(np.array([3]), np.array([[0.5, 0.5]], dtype=np.float64))
    np.testing.assert_array_equal(results.get(3), [0.5, 0.5])
    np.testing.assert_array_equal(results.get(5), [0.25, 0.75])


def test_an_empty_store_has_no_feature():
    assert np.isnan(FeatureResults(4).get(0)).all()


def test_collected_probabilities_are_the_classifiers():
    backend = MeanScores()
    classifier = Classifier(backend, SPEC, 4)
    crops = []
    for key, band in ((11, 0), (3, 2), (8, 1), (20, 2), (1, 0)):
        crop = np.zeros((3, 4, 4), dtype=np.float32)
        crop[band] = 5.0  # the band with data wins
        crops.append((key, crop))
    results = collect_probabilities(classifier, iter(crops), batch_size=2)
    assert backend.batches == [1, 2, 2, 1]  # the probe, then batches of two
    for key, crop in crops:
        expected = classifier.classify(crop[None]).probabilities[0]
        np.testing.assert_allclose(results.get(key), expected, rtol=1e-6)
        assert int(results.get(key).argmax()) == int(np.argmax(crop.sum(axis=(1, 2))))
    assert np.isnan(results.get(2)).all()


def test_cancel_stops_after_the_batch():
    backend = MeanScores()
    classifier = Classifier(backend, SPEC, 4)
    crops = ((key, np.zeros((3, 4, 4), dtype=np.float32)) for key in range(10))
    asked = []

    def cancelled() -> bool:
        asked.append(True)
        return len(asked) == 2

    with pytest.raises(CancelledError):
        collect_probabilities(classifier, crops, 3, cancelled)
    assert backend.batches == [1, 3, 3]  # stopped after the second batch
