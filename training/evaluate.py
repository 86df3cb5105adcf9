"""Evaluate a net on held-out data and write a report folder.

    python -m training evaluate --checkpoint best.ckpt --config training/configs/x.yaml --output reports/x

Writes into the output folder:

* ``metrics.json``: per class IoU, F1, precision, recall, reference and predicted counts; mean IoU
  and mean F1 (over classes present in reference or prediction); overall accuracy; the confusion
  matrix (rows reference, columns prediction). Computed by the plugin's ``core.metrics.confusion``
  (what rsdl:evaluate reports); ``ignore_index`` pixels (from the spec) are left out. A value
  whose denominator is zero (precision of a class never predicted, recall of a class absent from
  the reference) is ``null``, not 0.
* ``confusion_matrix.png``, ``class_distribution.png`` (reference labels, drawn by the plugin's
  ``core.class_chart``), ``samples.png`` (image, reference, prediction);
* ``training_loss.png``, ``training_metrics.png``, ``training_learning_rate.png`` from a Lightning
  CSV log when one is given or found beside the checkpoint.

Detectors and instance segmentors (model_type Detector / InstanceSegmentor) are evaluated by
``training.evaluate_detection`` instead: COCO mAP (torchmetrics), rsdl:evaluateobjects' object
counts at IoU 0.5, a precision-recall chart and a grid of detections (see that module).

Batches are dicts: ``{"image": float NCHW normalised, "mask": long NHW}`` for segmentation,
``{"image", "label": long N}`` for classification. Logits become classes by argmax; a single
channel is a sigmoid output, class 1 where ``sigmoid(logit) >= spec.seg_thresh`` (0.5 when the spec
has none); a segmentation spec that carries ``seg_thresh`` also thresholds several channels, as
rsdl:segment does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics
from rsdl_qgis_plugin.core.metrics.confusion import ConfusionMatrix, PairCounts
from rsdl_qgis_plugin.core.reports.class_chart import write_class_chart
from rsdl_qgis_plugin.core.reports.confusion_chart import confusion_figure

from .data.classes import IGNORE_INDEX
from .reports.curves import write_training_curves
from .reports.figures import class_names, save_png
from .reports.samples import Sample, write_sample_grid

DEFAULT_SAMPLES = 6
SPLITS = ("val", "test")
DETECTION_TYPES = (ModelType.DETECTOR, ModelType.INSTANCE_SEGMENTOR)


def torch_device(name: str = "auto") -> torch.device:
    """``auto`` is the GPU when torch sees one, else the CPU; any torch device name otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` as ``torch_device`` reads it, for every command that runs a net in torch."""
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (default), cpu, cuda, cuda:1 ..."
    )


def predicted_classes(logits: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Classes from logits [N, C, ...]: argmax, or the sigmoid threshold of one channel.

    A spec that carries ``seg_thresh`` thresholds several per-pixel channels as rsdl:segment does
    (softmax probabilities; class 0 where none reaches it); tile classifiers keep the argmax.
    """
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) >= spec.one_channel_threshold).long()
    classes = logits.argmax(dim=1)
    if spec.seg_thresh is not None and logits.dim() > 2:
        classes = classes * (torch.softmax(logits, dim=1).amax(dim=1) >= spec.seg_thresh)
    return classes


def class_count(spec: ModelSpec, channels: int) -> int:
    """Classes the metrics cover: the output channels (2 for one sigmoid channel) or the names."""
    return max(2 if channels == 1 else channels, len(spec.class_names))


class ConfusionMetrics:
    """Per-class metrics and confusion matrix, accumulated batch by batch with the plugin's
    ``core.metrics.confusion`` (the same numbers as rsdl:evaluate reports)."""

    def __init__(self, num_classes: int, ignore_index: int | None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = PairCounts()

    def update(self, predictions: torch.Tensor, reference: torch.Tensor) -> None:
        truth, predicted = reference.cpu().numpy(), predictions.cpu().numpy()
        valid = None if self.ignore_index is None else truth != self.ignore_index
        kept = truth if valid is None else truth[valid]
        if kept.size and (kept.min() < 0 or kept.max() >= self.num_classes):
            outside = sorted({int(v) for v in np.unique(kept) if not 0 <= v < self.num_classes})
            raise RsdlError(
                f"Reference values {outside} lie outside the net's {self.num_classes} classes "
                f"(0 to {self.num_classes - 1}, ignore index {self.ignore_index})."
            )
        self.counts.add_block(truth, predicted, valid)

    def compute(self, names: dict[int, str]) -> dict[str, Any]:
        report = ConfusionMatrix.from_counts(self.counts, range(self.num_classes)).as_dict(names)
        matrix = report["confusion_matrix"]
        return {
            "classes": report["classes"],
            "mean_iou": report["mean_iou"],
            "mean_f1": report["mean_f1"],
            "overall_accuracy": report["overall_accuracy"],
            "labelled": report["labelled"],
            "confusion_matrix": {key: matrix[key] for key in ("rows", "columns", "classes", "values")},
        }


def evaluate(
    net: nn.Module,
    spec: ModelSpec,
    batches: Iterable[dict[str, torch.Tensor]],
    output_dir: str | os.PathLike,
    metrics_csv: str | os.PathLike | None = None,
    device: str = "cpu",
    samples: int = DEFAULT_SAMPLES,
    max_batches: int | None = None,
    split: str = "val",
    score_threshold: float | None = None,
) -> dict[str, Any]:
    """Run ``net`` over ``batches``, write the report files into ``output_dir``; returns the metrics.

    Detectors go to ``evaluate_detection.evaluate_detection`` (``score_threshold``: the score an
    object needs to count, default the spec's ``det_conf``); other models ignore it."""
    if spec.model_type in DETECTION_TYPES:
        from .evaluate_detection import evaluate_detection

        return evaluate_detection(
            net, spec, batches, output_dir, metrics_csv, device, samples, max_batches, split, score_threshold
        )
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    classification = spec.model_type is ModelType.CLASSIFIER
    target_key = "label" if classification else "mask"
    run_on = torch_device(device)
    net = net.to(run_on).eval()
    metrics: ConfusionMetrics | None = None
    # Batches mark unlabelled pixels with IGNORE_INDEX (spec.ignore_index is the raster's value).
    statistics = ClassStatistics(ignore_value=IGNORE_INDEX)
    shown: list[Sample] = []
    items = 0
    with torch.inference_mode():
        for index, batch in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            if "image" not in batch or target_key not in batch:
                raise RsdlError(
                    f"Evaluation batches must hold 'image' and '{target_key}'; got {sorted(batch)}."
                )
            images = batch["image"].to(run_on, torch.float32)
            reference = batch[target_key].to(run_on).long()
            logits = net(images)
            if metrics is None:
                metrics = ConfusionMetrics(class_count(spec, logits.shape[1]), IGNORE_INDEX)
            predictions = predicted_classes(logits, spec)
            metrics.update(predictions, reference)
            statistics.add_block(reference.cpu().numpy())
            items += len(images)
            for image, ref, pred in zip(images, reference, predictions):
                if len(shown) < samples:
                    shown.append(Sample(image.cpu().numpy(), _item(ref), _item(pred)))
    if metrics is None:
        raise RsdlError("The evaluation data is empty: no batch to evaluate.")

    names = class_names(spec, metrics.num_classes)
    result = {
        "model_type": spec.model_type.value,
        "split": split,
        "items": items,
        "ignore_index": spec.ignore_index,
        **metrics.compute(names),
    }
    files = _write_figures(result, statistics, shown, spec, metrics.num_classes, output, metrics_csv)
    result["files"] = sorted(path.name for path in files)
    write_metrics_json(result, output)
    return result


def write_metrics_json(result: dict[str, Any], output: Path) -> Path:
    """``metrics.json`` in ``output``, complete or absent."""
    with atomic_file(output / "metrics.json", sidecars=()) as temp:
        temp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return output / "metrics.json"


def _item(tensor: torch.Tensor) -> np.ndarray | int:
    return int(tensor) if tensor.ndim == 0 else tensor.cpu().numpy()


def _write_figures(
    result: dict[str, Any],
    statistics: ClassStatistics,
    shown: list[Sample],
    spec: ModelSpec,
    num_classes: int,
    output: Path,
    metrics_csv: str | os.PathLike | None,
) -> list[Path]:
    names = class_names(spec, num_classes)
    unit = "items" if spec.model_type is ModelType.CLASSIFIER else "pixels"
    split = result["split"]
    files = [
        save_png(
            confusion_figure(
                np.asarray(result["confusion_matrix"]["values"]),
                list(names.values()),
                f"Confusion matrix ({split}, {result['labelled']:,} {unit})",
            ),
            output / "confusion_matrix.png",
        )
    ]
    rows = statistics.as_table(names)
    for row in rows:
        color = spec.class_colors.get(int(row["value"]))
        if color:
            row["color"] = color
    files.append(write_class_chart(rows, output / "class_distribution.png", f"Reference classes ({split})"))
    if shown:
        files.append(write_sample_grid(shown, spec, num_classes, output / "samples.png"))
    if metrics_csv is not None:
        files.extend(write_training_curves(metrics_csv, output))
    return files


# -- data from a LightningCLI config ------------------------------------------------------------


def load_datamodule(config: str | os.PathLike) -> Any:
    """The LightningDataModule of a LightningCLI-style YAML (its ``data:`` section, or the file
    itself when it is one ``class_path``/``init_args`` block), built by jsonargparse as
    LightningCLI builds it."""
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    content = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    section = content.get("data", content) if isinstance(content, dict) else None
    if not isinstance(section, dict) or "class_path" not in section:
        raise RsdlError(
            f"'{config}' has no 'data:' section with a class_path (and init_args); give the YAML "
            "config the model was trained with."
        )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    try:
        parsed = parser.parse_object({"data": section})
        return parser.instantiate_classes(parsed).data
    except Exception as error:  # jsonargparse reports through several exception types
        raise RsdlError(f"The data section of '{config}' cannot be built: {error}") from error


def with_model_normalisation(datamodule: Any, spec: ModelSpec) -> Any:
    """``datamodule`` set to normalise as the model was trained (the spec's mean, std and scale).

    A config rebuilds the data as its file says; a fit run with other values on the command line
    (``--data.init_args.mean`` for ImageNet weights) would otherwise be fed other numbers than it
    learnt on, and score worse than it is. rsdl's data modules take them; others are left as built.
    """
    known = all(hasattr(datamodule, name) for name in ("mean", "std", "max_pixel_value"))
    if known and spec.standardization_mean is not None and spec.standardization_std is not None:
        datamodule.mean = list(spec.standardization_mean)
        datamodule.std = list(spec.standardization_std)
        datamodule.max_pixel_value = spec.max_pixel_value
    return datamodule


def dataloader(datamodule: Any, split: str) -> Iterable[dict[str, torch.Tensor]]:
    """The datamodule's validation or test loader, after its ``setup``."""
    datamodule.prepare_data()
    datamodule.setup("validate" if split == "val" else "test")
    return datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()


def find_metrics_csv(checkpoint: Path) -> Path | None:
    """Lightning's CSVLogger writes version_N/metrics.csv; checkpoints sit in version_N/checkpoints/."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / "metrics.csv").is_file():
            return folder / "metrics.csv"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training evaluate",
        description="Evaluate a checkpoint on held-out data: metrics JSON, confusion matrix, class "
        "distribution, sample predictions and training curves; for detectors COCO mAP, object counts "
        "at IoU 0.5, a precision-recall chart and a grid of detections.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="Lightning checkpoint (.ckpt)")
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="LightningCLI YAML whose 'data:' section builds the datamodule (the training config)",
    )
    parser.add_argument("--output", required=True, type=Path, help="report folder (created)")
    parser.add_argument(
        "--split", choices=SPLITS, default="val", help="which loader to evaluate (default val)"
    )
    parser.add_argument(
        "--metrics-csv",
        type=Path,
        help="Lightning CSV log for the training curves (default: metrics.csv beside the checkpoint's "
        "version folder, if any)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"items in samples.png (default {DEFAULT_SAMPLES})",
    )
    parser.add_argument("--max-batches", type=int, help="stop after this many batches (default: all)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        help="detectors: the score a detection needs to count in the object-level TP/FP/FN (default: "
        "the model's det_conf, what rsdl:detect keeps); mAP always uses every detection",
    )
    add_device_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training evaluate``: 0 when the report was written."""
    args = _parser().parse_args(argv)
    from .checkpoints import load_checkpoint_net

    try:
        net, spec = load_checkpoint_net(args.checkpoint)
        loader = dataloader(with_model_normalisation(load_datamodule(args.config), spec), args.split)
        metrics_csv = args.metrics_csv or find_metrics_csv(args.checkpoint)
        result = evaluate(
            net,
            spec,
            loader,
            args.output,
            metrics_csv,
            args.device,
            args.samples,
            args.max_batches,
            args.split,
            args.score_threshold,
        )
    except RsdlError as error:
        print(f"evaluate failed: {error}", file=sys.stderr)
        return 1
    print(f"{result['split']}: {result['items']} items, {_headline(result)}; report in {args.output}")
    return 0


def _headline(result: dict[str, Any]) -> str:
    def text(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    if "map" in result:
        boxes, objects = result["map"]["bbox"], result["objects"]["bbox"]
        return (
            f"box mAP@0.5 {text(boxes['map50'])}, mAP@[.5:.95] {text(boxes['map'])}; at score >= "
            f"{result['score_threshold']:g}: {objects['tp']} TP, {objects['fp']} FP, {objects['fn']} FN, "
            f"F1@0.5 {text(objects['f1'])}"
        )
    return f"mean IoU {text(result['mean_iou'])}, overall accuracy {text(result['overall_accuracy'])}"
