"""Classification of crops (QGIS-free): reading model outputs, refusing segmentation models, grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import ModelError, RsdlError
from rsdl_qgis_plugin.core.tiling.policy import tile_size
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.classifier import (
    Classifier,
    TileGrid,
    class_probabilities,
    classify_in_batches,
    crop_square,
    probability_field_names,
)

CLASSIFIER = ModelSpec(model_type=ModelType.CLASSIFIER, class_names={0: "intact", 1: "damaged"})


class FixedOutput:
    """A stand-in backend that returns ``output`` for every item of a batch (and counts calls)."""

    input_channels = 3

    def __init__(self, output: list[float] | np.ndarray, input_size=(None, None), spec=CLASSIFIER) -> None:
        self.output = np.asarray(output, dtype=np.float32)
        self.input_size = input_size
        self.spec = spec
        self.batches: list[int] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batches.append(len(batch))
        return [np.repeat(self.output[None], len(batch), axis=0)]


def by_hand_softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


def test_probabilities_pass_unchanged():
    output = np.array([[0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    np.testing.assert_array_equal(class_probabilities(output), output)


def test_logits_are_softmaxed():
    output = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], dtype=np.float32)
    expected = [by_hand_softmax([2.0, -1.0, 0.5]), by_hand_softmax([0.1, 0.2, 0.3])]
    # The second row alone lies in [0, 1] but does not sum to 1: logits too.
    np.testing.assert_allclose(class_probabilities(output), expected, rtol=1e-6)
    large = class_probabilities(np.array([[1000.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(large, [[1.0, 0.0]])  # no overflow


def test_rows_of_values_in_range_that_do_not_sum_to_one_are_logits():
    output = np.array([[0.9, 0.9]], dtype=np.float32)
    np.testing.assert_allclose(class_probabilities(output), [[0.5, 0.5]])


def test_one_channel_is_a_sigmoid_score_against_background():
    probabilities = class_probabilities(np.array([[0.25], [0.9]], dtype=np.float32))
    np.testing.assert_allclose(probabilities, [[0.75, 0.25], [0.1, 0.9]], rtol=1e-6)
    logits = class_probabilities(np.array([[2.0], [-3.0]], dtype=np.float32))
    sigmoid = [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(3.0))]
    np.testing.assert_allclose(logits[:, 1], sigmoid, rtol=1e-6)
    np.testing.assert_allclose(logits.sum(axis=1), 1.0)


def test_one_by_one_spatial_outputs_are_classifications():
    output = np.array([[0.5, 1.5, -2.0]], dtype=np.float32)[:, :, None, None]
    np.testing.assert_allclose(class_probabilities(output), [by_hand_softmax([0.5, 1.5, -2.0])], rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 8, 8), (2, 1, 4, 4), (2, 3, 1, 4)])
def test_spatial_outputs_are_refused(shape):
    with pytest.raises(ModelError, match="this is a segmentation model, use rsdl:segment"):
        class_probabilities(np.zeros(shape, dtype=np.float32))


def test_classifier_refuses_a_segmentation_model_at_load():
    backend = FixedOutput(np.zeros((3, 16, 16)), spec=ModelSpec())
    with pytest.raises(ModelError, match="rsdl:segment"):
        Classifier(backend, backend.spec, 16)


def test_a_segmentor_typed_model_with_class_scores_runs_with_a_warning():
    spec = ModelSpec()  # what a model without metadata reads as
    classifier = Classifier(FixedOutput([0.2, 0.8], spec=spec), spec, 16)
    assert classifier.class_names == {0: "class_0", 1: "class_1"}
    assert any("Segmentor" in warning for warning in classifier.warnings)


def test_classify_normalises_and_returns_ids_and_probabilities():
    class Redness(FixedOutput):
        def run(self, batch):
            self.batches.append(len(batch))
            red_minus_blue = batch[:, 0].mean(axis=(1, 2)) - batch[:, 2].mean(axis=(1, 2))
            return [np.stack([-red_minus_blue, red_minus_blue], axis=1) * 10]

    backend = Redness([0.0, 0.0])
    classifier = Classifier(backend, CLASSIFIER, 8)
    crops = np.zeros((2, 3, 8, 8), dtype=np.float32)
    crops[0, 0] = 255  # red
    crops[1, 2] = 255  # blue
    result = classifier.classify(crops)
    assert result.class_ids.tolist() == [1, 0]
    expected = by_hand_softmax([10.0, -10.0])[0]  # normalised to 0..1 by the default scale 255
    np.testing.assert_allclose(result.best_probabilities, [expected, expected], rtol=1e-5)
    assert result.probabilities.shape == (2, 2)


def test_sigmoid_classifier_names_and_colours():
    spec = ModelSpec(model_type=ModelType.CLASSIFIER, class_names={0: "damaged"}, class_colors={0: "#ff0000"})
    classifier = Classifier(FixedOutput([0.7], spec=spec), spec, 8)
    assert classifier.class_names == {0: "background", 1: "damaged"}
    assert [(c.name, c.color) for c in classifier.classes] == [
        ("background", "#000000"),
        ("damaged", "#ff0000"),
    ]
    two_names = ModelSpec(model_type=ModelType.CLASSIFIER, class_names={0: "intact", 1: "damaged"})
    assert Classifier(FixedOutput([0.7], spec=two_names), two_names, 8).class_names == {
        0: "intact",
        1: "damaged",
    }


def test_the_generated_classifier_tells_red_from_blue(test_models):
    backend = load_model(test_models["classifier.onnx"])
    classifier = Classifier(backend, backend.spec, tile_size(backend.spec, backend.input_size, None))
    assert classifier.tile_size == 32
    rng = np.random.default_rng(1)
    red = np.stack(
        [rng.uniform(150, 250, (32, 32)), rng.uniform(0, 80, (32, 32)), rng.uniform(0, 80, (32, 32))]
    )
    blue = red[::-1]
    result = classifier.classify(np.stack([red, blue, blue]).astype(np.float32))
    assert [classifier.class_names[i] for i in result.class_ids] == ["damaged", "intact", "intact"]
    assert (result.best_probabilities > 0.99).all()


def test_batches_hold_at_most_batch_size_crops():
    backend = FixedOutput([0.1, 0.9])
    classifier = Classifier(backend, CLASSIFIER, 4)
    crops = ((key, np.zeros((3, 4, 4), dtype=np.float32)) for key in (5, 7, 9, 11, 13))
    batches = list(classify_in_batches(classifier, crops, 2))
    assert [keys.tolist() for keys, _ in batches] == [[5, 7], [9, 11], [13]]
    assert backend.batches == [1, 2, 2, 1]  # the probe, then the batches
    with pytest.raises(RsdlError, match="batch size"):
        list(classify_in_batches(classifier, iter([]), 0))


def test_probability_field_names_are_sanitised_and_unique():
    names = {0: "Intact", 1: "Major damage!", 2: "major-damage", 3: "??"}
    assert probability_field_names(names) == ["p_intact", "p_major_damage", "p_major_damage_2", "p_3"]


@pytest.mark.parametrize(
    ("width", "height", "tile", "stride", "columns", "rows"),
    [
        (125, 90, 32, 32, 4, 3),  # edge tiles overhang
        (128, 64, 32, 32, 4, 2),  # exact fit: no extra tile
        (64, 64, 32, 16, 3, 3),  # overlapping: the last one ends at the edge
        (10, 10, 32, 32, 1, 1),  # smaller than one tile
        (100, 100, 10, 50, 2, 2),  # gaps: no tile starts past the edge
    ],
)
def test_tile_grid_counts(width, height, tile, stride, columns, rows):
    grid = TileGrid(width, height, tile, stride)
    assert (grid.columns, grid.rows, len(grid)) == (columns, rows, columns * rows)
    windows = list(grid)
    assert [w.index for w in windows] == list(range(len(grid)))
    assert max(w.col for w in windows) < width and max(w.row for w in windows) < height
    if stride <= tile:  # the tiles cover the grid
        assert max(w.col for w in windows) + tile >= width


def test_tile_windows_are_row_major():
    grid = TileGrid(100, 70, 32, 24)
    window = grid.window(grid.columns + 2)
    assert (window.row, window.col, window.size) == (24, 48, 32)


def test_crop_square_is_centred_with_margin():
    assert crop_square((0.0, 0.0, 10.0, 4.0), 10.0, 99.0) == pytest.approx((-1.0, -4.0, 11.0, 8.0))
    assert crop_square((0.0, 0.0, 10.0, 4.0), 0.0, 99.0) == pytest.approx((0.0, -3.0, 10.0, 7.0))
    assert crop_square((5.0, 5.0, 5.0, 5.0), 0.0, 16.0) == pytest.approx((-3.0, -3.0, 13.0, 13.0))
