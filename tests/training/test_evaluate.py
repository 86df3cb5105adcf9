"""evaluate: metrics against a confusion matrix computed here with numpy on a known prediction,
report PNGs that are real images, and a datamodule built from a LightningCLI-style YAML."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from training.data.classes import IGNORE_INDEX
from training.evaluate import evaluate, load_datamodule, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IGNORE = IGNORE_INDEX  # what the data sets put in batches for unlabelled pixels
NAMES = {0: "background", 1: "building", 2: "water", 3: "forest"}
SEG_SPEC = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names=NAMES,
    class_colors={1: "#e31a1c", 2: "#1f78b4"},
    bands=(1, 2, 3, 4),
    ignore_index=255,  # the raster value; batches carry IGNORE_INDEX instead
)
LIGHTNING_CSV = """epoch,step,lr-AdamW,train_loss_step,train_loss_epoch,val_loss,val_iou
0,4,0.001,0.9,,,
0,9,0.001,0.8,,,
0,9,,,,0.85,0.31
0,9,,,0.86,,
1,14,0.0005,0.6,,,
1,19,0.0005,0.5,,,
1,19,,,,0.62,0.48
1,19,,,0.55,,
"""


def assert_png(path, min_bytes: int = 5000) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > min_bytes, path
    pixels = imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0.01, path


def numpy_metrics(reference: np.ndarray, prediction: np.ndarray, classes: int) -> dict:
    """The oracle: confusion matrix by counting, ratios by their textbook definitions."""
    keep = reference != IGNORE
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (reference[keep], prediction[keep]), 1)
    tp = np.diag(matrix).astype(float)
    fp, fn = matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp

    def ratio(num, den):
        return [None if d == 0 else n / d for n, d in zip(num, den)]

    iou = ratio(tp, tp + fp + fn)
    return {
        "matrix": matrix,
        "iou": iou,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "mean_iou": np.mean([v for v in iou if v is not None]),
        "accuracy": tp.sum() / matrix.sum(),
    }


def test_segmentation_metrics_equal_a_hand_computed_confusion_matrix(tmp_path):
    rng = np.random.default_rng(7)
    prediction = rng.choice(3, size=(6, 12, 16), p=[0.5, 0.3, 0.2])  # class 3 never predicted
    reference = np.where(rng.random(prediction.shape) < 0.6, prediction, rng.integers(0, 3, prediction.shape))
    reference[rng.random(prediction.shape) < 0.1] = IGNORE  # class 3 absent from the reference too
    reference[0, 0, :5] = 2
    prediction[0, 0, :5] = 0
    # The "net" is the identity: its input is the one-hot of the prediction, i.e. these logits.
    images = np.moveaxis(np.eye(4, dtype=np.float32)[prediction], -1, 1)
    batches = [
        {"image": torch.from_numpy(images[i : i + 4]), "mask": torch.from_numpy(reference[i : i + 4])}
        for i in range(0, 6, 4)
    ]
    csv = tmp_path / "metrics.csv"
    csv.write_text(LIGHTNING_CSV)
    output = tmp_path / "report"

    result = evaluate(nn.Identity(), SEG_SPEC, batches, output, metrics_csv=csv, samples=3)

    expected = numpy_metrics(reference, prediction, 4)
    written = json.loads((output / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["confusion_matrix"]["values"] == expected["matrix"].tolist()
    assert [c["name"] for c in written["classes"]] == list(NAMES.values())
    for key in ("iou", "f1", "precision", "recall"):
        got = [c[key] for c in written["classes"]]
        assert got == pytest.approx(expected[key], abs=1e-6), key
    assert written["classes"][3]["iou"] is None and written["classes"][3]["precision"] is None
    assert written["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-6)
    assert written["overall_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert written["labelled"] == int((reference != IGNORE).sum()) and written["items"] == 6
    pngs = {
        "confusion_matrix.png",
        "class_distribution.png",
        "samples.png",
        "training_loss.png",
        "training_metrics.png",
        "training_learning_rate.png",
    }
    assert set(written["files"]) == pngs
    for name in pngs:
        assert_png(output / name)


class MeanPool(nn.Module):
    """A classifier whose logits are the image's channel means."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_classification_metrics_and_sample_grid(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 20)
    prediction = np.where(rng.random(20) < 0.7, labels, (labels + 1) % 3)
    images = np.moveaxis(np.eye(3, dtype=np.float32)[prediction], -1, 1)[:, :, None, None]
    images = np.broadcast_to(images, (20, 3, 8, 8)) + rng.normal(0, 0.01, (20, 3, 8, 8)).astype(np.float32)
    spec = ModelSpec(
        model_type=ModelType.CLASSIFIER, class_names={0: "cat", 1: "dog", 2: "fox"}, bands=(1, 2, 3)
    )
    batches = [
        {"image": torch.from_numpy(images[i : i + 8]), "label": torch.from_numpy(labels[i : i + 8])}
        for i in (0, 8, 16)
    ]

    result = evaluate(MeanPool(), spec, batches, tmp_path, samples=8)

    expected = numpy_metrics(labels, prediction, 3)
    assert result["confusion_matrix"]["values"] == expected["matrix"].tolist()
    assert result["overall_accuracy"] == pytest.approx(expected["accuracy"])
    assert [c["recall"] for c in result["classes"]] == pytest.approx(expected["recall"])
    for name in ("confusion_matrix.png", "class_distribution.png", "samples.png"):
        assert_png(tmp_path / name)


def test_main_builds_the_datamodule_from_a_lightning_cli_config(tmp_path, monkeypatch):
    (tmp_path / "tiny_data.py").write_text(
        textwrap.dedent(
            """
            import torch
            from lightning.pytorch import LightningDataModule

            class TinyData(LightningDataModule):
                def __init__(self, items: int = 2, size: int = 8):
                    super().__init__()
                    self.items, self.size = items, size

                def val_dataloader(self):
                    image = torch.zeros(self.items, 4, self.size, self.size)
                    image[:, 1] = 1.0
                    mask = torch.ones(self.items, self.size, self.size, dtype=torch.long)
                    return [{"image": image, "mask": mask}]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "fit.yaml"
    config.write_text(
        "trainer:\n  max_epochs: 1\ndata:\n  class_path: tiny_data.TinyData\n  init_args:\n    items: 3\n"
    )
    datamodule = load_datamodule(config)
    assert type(datamodule).__name__ == "TinyData" and datamodule.items == 3

    # The command line, with the checkpoint loader stubbed; Lightning's log layout is
    # version_N/metrics.csv beside version_N/checkpoints/.
    version = tmp_path / "lightning_logs" / "version_0"
    (version / "checkpoints").mkdir(parents=True)
    (version / "metrics.csv").write_text(LIGHTNING_CSV)
    monkeypatch.setattr("training.checkpoints.load_checkpoint_net", lambda path: (nn.Identity(), SEG_SPEC))
    report = tmp_path / "report"
    checkpoint = version / "checkpoints" / "epoch=1.ckpt"
    args = [
        "--checkpoint",
        str(checkpoint),
        "--config",
        str(config),
        "--output",
        str(report),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    result = json.loads((report / "metrics.json").read_text())
    assert result["overall_accuracy"] == 1.0 and result["classes"][1]["iou"] == 1.0
    assert "training_loss.png" in result["files"]


def test_segmentation_metrics_agree_with_torchmetrics(tmp_path):
    """The report's numbers against torchmetrics, the library the tasks log their metrics with."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_jaccard_index,
        multiclass_precision,
        multiclass_recall,
    )

    rng = np.random.default_rng(11)
    prediction = torch.from_numpy(rng.integers(0, 4, (5, 20, 24)))
    reference = torch.where(torch.from_numpy(rng.random((5, 20, 24))) < 0.5, prediction, 1)
    reference[torch.from_numpy(rng.random((5, 20, 24))) < 0.15] = IGNORE
    logits = torch.nn.functional.one_hot(prediction, 4).permute(0, 3, 1, 2).float()
    batches = [{"image": logits[i : i + 2], "mask": reference[i : i + 2]} for i in range(0, 5, 2)]

    result = evaluate(nn.Identity(), SEG_SPEC, batches, tmp_path, samples=0)

    common = {"num_classes": 4, "ignore_index": IGNORE}
    matrix = multiclass_confusion_matrix(prediction, reference, **common)
    assert result["confusion_matrix"]["values"] == matrix.tolist()
    for key, function in (
        ("iou", multiclass_jaccard_index),
        ("f1", multiclass_f1_score),
        ("precision", multiclass_precision),
        ("recall", multiclass_recall),
    ):
        expected = function(prediction, reference, average="none", **common).tolist()
        assert [c[key] for c in result["classes"]] == pytest.approx(expected, abs=1e-6), key
    accuracy = multiclass_accuracy(prediction, reference, average="micro", **common)
    assert result["overall_accuracy"] == pytest.approx(float(accuracy), abs=1e-6)
    assert result["mean_iou"] == pytest.approx(
        float(multiclass_jaccard_index(prediction, reference, average="macro", **common)), abs=1e-6
    )


def test_reference_values_beyond_the_classes_are_refused(tmp_path):
    images = torch.zeros(1, 4, 4, 4)
    mask = torch.full((1, 4, 4), 7)
    with pytest.raises(RsdlError, match=r"Reference values \[7\] lie outside the net's 4 classes"):
        evaluate(nn.Identity(), SEG_SPEC, [{"image": images, "mask": mask}], tmp_path)


@pytest.mark.parametrize("seg_thresh", [None, 0.5, 0.7])
@pytest.mark.parametrize("channels", [1, 4])
def test_predicted_classes_follow_the_plugins_rule(seg_thresh, channels):
    # rsdl:segment classifies the exported (softmax / sigmoid) probabilities with the same spec
    from rsdl_qgis_plugin.inference.sinks import classes_and_confidence
    from training.evaluate import predicted_classes

    logits = torch.randn(2, channels, 9, 11, generator=torch.Generator().manual_seed(channels)) * 2
    spec = ModelSpec(class_names=NAMES, seg_thresh=seg_thresh)
    activation = torch.sigmoid if channels == 1 else lambda x: torch.softmax(x, dim=1)
    probabilities = activation(logits).numpy()
    expected = [classes_and_confidence(p, seg_thresh, np.dtype(np.uint8), 255)[0] for p in probabilities]
    predicted = predicted_classes(logits, spec).numpy()
    np.testing.assert_array_equal(predicted, np.stack(expected))
    if seg_thresh == 0.7 and channels == 4:
        assert (predicted == 0).mean() > (logits.argmax(dim=1) == 0).float().mean()  # the rule applies


def test_the_data_are_normalised_as_the_model_was_trained(chips_folder, tmp_path):
    """A fit given other mean/std on its command line (ImageNet weights' own) is evaluated with those,
    not with the values its config file would measure."""
    from training.data import ChipsDataModule
    from training.evaluate import with_model_normalisation

    module = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path))
    spec = ModelSpec(
        standardization_mean=(0.498, 0.498, 0.498),
        standardization_std=(0.502, 0.502, 0.502),
        max_pixel_value=255.0,
    )
    with_model_normalisation(module, spec).setup("validate")
    built = module.model_spec()
    assert built.standardization_mean == spec.standardization_mean
    assert built.standardization_std == spec.standardization_std
    image = module.datasets["val"][0]["image"]
    raw = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path / "raw"), mean=[0.0] * 3, std=[1.0] * 3)
    raw.setup("validate")
    expected = (raw.datasets["val"][0]["image"] - 0.498) / 0.502
    assert torch.allclose(image, expected, atol=1e-5)
