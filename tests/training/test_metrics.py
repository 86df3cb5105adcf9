"""The tasks' metrics (training/tasks/metrics.py): torchmetrics with the ignore index, flattened into
logger keys per class."""

from __future__ import annotations

import pytest
import torch

from training.data import IGNORE_INDEX
from training.tasks.metrics import flatten, make_loss_mean, make_metrics, metric_key


def test_segmentation_metrics_skip_ignored_pixels():
    metrics = make_metrics("segmentation", 3, IGNORE_INDEX)
    target = torch.tensor([[0, 0, 1, 1, 2, IGNORE_INDEX]])
    prediction = torch.tensor([[0, 1, 1, 1, 2, 0]])  # the ignored pixel's wrong class must not count
    computed = metrics(prediction, target)
    # IoU by hand: class 0 1/2, class 1 2/3, class 2 1/1
    assert computed["iou_per_class"].tolist() == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert float(computed["iou"]) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert float(computed["accuracy"]) == pytest.approx(4 / 5)


def test_classification_metrics_have_no_iou():
    assert "iou" not in make_metrics("classification", 2, IGNORE_INDEX)
    assert {"accuracy", "f1", "f1_per_class", "recall_per_class"} <= set(
        make_metrics("classification", 2, -1)
    )


def test_flatten_names_means_and_per_class_values():
    computed = {"iou": torch.tensor(0.5), "iou_per_class": torch.tensor([0.25, 0.75])}
    means, per_class = flatten(computed, {0: "bare soil", 1: "Wald/Forst"}, "val")
    assert means == {"val_iou": 0.5}
    assert per_class == {"val_iou_bare_soil": 0.25, "val_iou_Wald_Forst": 0.75}
    assert metric_key("!!") == "class" and metric_key("a-b_c") == "a-b_c"


def test_the_loss_mean_is_weighted_by_batch_size():
    mean = make_loss_mean()
    mean.update(torch.tensor(1.0), weight=3)
    mean.update(torch.tensor(3.0), weight=1)
    assert float(mean.compute()) == pytest.approx(1.5)
