"""torchmetrics for the tasks: per-class and mean IoU/F1 (segmentation), accuracy/recall/F1
(classification), all skipping the ignore index. Means are macro averages over the classes that
occur in predictions or targets (torchmetrics' "macro"), so an absent class does not drag them down.
"""

from __future__ import annotations

import re

import torch
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)


def make_metrics(task: str, num_classes: int, ignore_index: int) -> MetricCollection:
    """Metrics of one stage; per-class ones end in ``_per_class``."""
    common = {"num_classes": num_classes, "ignore_index": ignore_index}
    metrics = {
        "accuracy": MulticlassAccuracy(average="micro", **common),
        "f1": MulticlassF1Score(average="macro", **common),
        "f1_per_class": MulticlassF1Score(average="none", **common),
        "precision_per_class": MulticlassPrecision(average="none", **common),
        "recall_per_class": MulticlassRecall(average="none", **common),
    }
    if task == "segmentation":
        metrics["iou"] = MulticlassJaccardIndex(average="macro", **common)
        metrics["iou_per_class"] = MulticlassJaccardIndex(average="none", **common)
    return MetricCollection(metrics)


def make_loss_mean() -> MeanMetric:
    """The stage's mean loss, weighted by batch size and synced across processes."""
    return MeanMetric()


def metric_key(name: str) -> str:
    """A class name as a logger-friendly key part."""
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "class"


def flatten(
    computed: dict[str, torch.Tensor], class_names: dict[int, str], prefix: str
) -> tuple[dict[str, float], dict[str, float]]:
    """(means ``{prefix}_{metric}``, per class ``{prefix}_{metric}_{class}``) as floats."""
    means: dict[str, float] = {}
    per_class: dict[str, float] = {}
    for name, value in computed.items():
        if name.endswith("_per_class"):
            base = name[: -len("_per_class")]
            for index, item in enumerate(value.tolist()):
                per_class[f"{prefix}_{base}_{metric_key(class_names.get(index, str(index)))}"] = float(item)
        else:
            means[f"{prefix}_{name}"] = float(value)
    return means, per_class
