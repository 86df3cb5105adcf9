"""``python -m training evaluate`` for detectors and instance segmentors (model_type Detector or
InstanceSegmentor); ``training.evaluate.evaluate`` hands those over here.

Each chip goes through the checkpoint's net in rsdl's exported layout
(``training.nets.detection.RsdlLayout``, what ``export`` writes) and rsdl:detect's own decoder
(``inference.detector.ObjectDecoder``: boxes clipped to the chip, per-class non-maximum
suppression at the spec's ``det_iou_thresh``, masks cut to their box above 0.5), so the objects
are the ones rsdl:detect finds on that chip. Written into the output folder:

* ``metrics.json``:

  - ``map``: torchmetrics' ``MeanAveragePrecision`` (pycocotools backend, as the task logs it)
    over every detection the net returns: ``bbox`` (and ``segm`` for instance models) with ``map``
    (AP@[.5:.95]), ``map50``, ``map75`` and per class ``map`` and ``map50`` (null for a class absent
    from the reference);
  - ``objects``: the object-level counts of rsdl:evaluateobjects (``core.metrics.object_matching``)
    at IoU 0.5 over the detections scoring at least ``score_threshold`` (the spec's ``det_conf``,
    what rsdl:detect keeps): TP, FP, FN, precision, recall, F1 and COCO APs, in total and per class;
    ``bbox`` by box IoU, ``segm`` by mask IoU (pixel counts, as COCO's);

* ``precision_recall.png`` (``precision_recall_masks.png`` for instance models): the curves of
  every detection at IoU 0.5 (``core.reports.object_report``), with each class's point at the
  score threshold marked;
* ``detections.png``: chips with the reference objects (dashed, cyan) and the detections at the
  score threshold (class colours, boxes or mask outlines, with scores);
* the training curves, as for the other models.

Batches are ``{"image": [B, C, H, W] normalised, "targets": [{"boxes", "class_ids"(, "masks")}]}``
(``training.data.objects.collate_objects``), square chips of one size per batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.metrics.object_matching import IouPairs, ObjectEvaluation, evaluate_objects
from rsdl_qgis_plugin.core.objects.detections import Detections, InstanceMask
from rsdl_qgis_plugin.core.reports.object_report import precision_recall_figure
from rsdl_qgis_plugin.inference.detector import ObjectDecoder, detection_thresholds

from .reports.curves import write_training_curves
from .reports.figures import class_names, save_png
from .reports.samples import ObjectSample, write_object_grid

MATCH_IOU = 0.5  # the object-level counts' IoU (the F1@0.5, rsdl:evaluateobjects' default)
IOU_TYPES = {"bbox": "boxes", "segm": "masks"}


@dataclass
class ChipDetections:
    """One chip: its normalised image (C, H, W), the decoded detections (every score) and the
    reference objects (scores 1; masks as full-chip ``InstanceMask`` for instance data)."""

    image: np.ndarray
    detections: Detections
    reference: Detections
    rows: int  # the net's detections per chip at most (its output rows)


def layout_net(net: nn.Module) -> nn.Module:
    """The net in rsdl's layout: a torchvision R-CNN is wrapped as ``export`` wraps it; any other
    module must return (boxes, scores, class_ids(, masks)) itself."""
    if hasattr(net, "roi_heads"):
        from .nets.detection import RsdlLayout

        return RsdlLayout(net)
    return net


def _reference(target: dict[str, torch.Tensor]) -> Detections:
    boxes = target["boxes"].detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
    class_ids = target["class_ids"].detach().cpu().numpy()
    masks = None
    if "masks" in target:
        masks = [InstanceMask(0, 0, m.astype(bool)) for m in target["masks"].detach().cpu().numpy()]
    return Detections(boxes, np.ones(len(boxes)), class_ids, masks=masks)


def detect_chips(
    net: nn.Module,
    spec: ModelSpec,
    batches: Iterable[dict[str, Any]],
    device: str = "cpu",
    max_batches: int | None = None,
) -> Iterator[ChipDetections]:
    """Every chip of ``batches`` with what rsdl:detect would find on it (every score above 0; see
    the module docstring) and its reference objects."""
    from .evaluate import torch_device

    run_on = torch_device(device)
    model = layout_net(net).to(run_on).eval()
    decoder: ObjectDecoder | None = None
    _, iou_threshold = detection_thresholds(spec)
    with torch.inference_mode():
        for index, batch in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            if "image" not in batch or "targets" not in batch:
                raise RsdlError(
                    "Detection batches must hold 'image' and 'targets' (collate_objects); got "
                    f"{sorted(batch)}."
                )
            images = batch["image"].to(run_on, torch.float32)
            height, width = images.shape[-2:]
            if height != width:
                raise RsdlError(f"Detection chips must be square; got {height} x {width} px.")
            outputs = [t.detach().cpu().numpy() for t in model(images)]
            if decoder is None:
                names = ["boxes", "scores", "class_ids", "masks"][: len(outputs)]
                decoder = ObjectDecoder(spec, [o.shape for o in outputs], names, "checkpoint")
            per_chip = decoder.decode(outputs, 0.0, iou_threshold, False, int(width))
            for image, detections, target in zip(images, per_chip, batch["targets"]):
                rows = int(outputs[1].shape[1])
                yield ChipDetections(image.cpu().numpy(), detections, _reference(target), rows)


# -- metrics ------------------------------------------------------------------------------------


def full_masks(objects: Detections, height: int, width: int) -> np.ndarray:
    """(N, H, W) bool masks of objects' ``InstanceMask`` pieces on the chip."""
    masks = np.zeros((len(objects), height, width), dtype=bool)
    for index, mask in enumerate(objects.masks or ()):
        rows, cols = mask.mask.shape
        masks[index, mask.row0 : mask.row0 + rows, mask.col0 : mask.col0 + cols] = mask.mask
    return masks


def box_ious(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, M) IoUs of x1, y1, x2, y2 boxes (COCO's: areas without the +1 of pixel counting)."""
    from torchvision.ops import box_iou

    return box_iou(torch.from_numpy(first), torch.from_numpy(second)).numpy()


def mask_ious(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, M) IoUs of (N, H, W) and (M, H, W) bool masks, by pixel counts (as COCO's RLE IoU)."""
    a = first.reshape(len(first), -1).astype(np.float64)
    b = second.reshape(len(second), -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class ObjectPool:
    """Every chip's detections and references on one global index, with the IoUs of pairs on the
    same chip (pairs across chips never overlap), for ``core.metrics.object_matching``."""

    iou_type: str
    scores: list[np.ndarray] = field(default_factory=list)
    classes: list[np.ndarray] = field(default_factory=list)
    reference_classes: list[np.ndarray] = field(default_factory=list)
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    _predictions: int = 0
    _references: int = 0

    def add(self, chip: ChipDetections) -> None:
        detections, reference = chip.detections, chip.reference
        if len(detections) and len(reference):
            if self.iou_type == "segm":
                height, width = chip.image.shape[-2:]
                ious = mask_ious(full_masks(detections, height, width), full_masks(reference, height, width))
            else:
                ious = box_ious(detections.boxes, reference.boxes)
            rows, cols = np.nonzero(ious > 0)
            self.pairs.append((rows + self._predictions, cols + self._references, ious[rows, cols]))
        self.scores.append(detections.scores)
        self.classes.append(detections.class_ids)
        self.reference_classes.append(reference.class_ids)
        self._predictions += len(detections)
        self._references += len(reference)

    def evaluate(self, min_score: float, names: dict[int, str]) -> ObjectEvaluation:
        """rsdl:evaluateobjects' matching at ``MATCH_IOU`` of the detections scoring >= ``min_score``."""
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        classes = np.concatenate(self.classes) if self.classes else np.zeros(0, dtype=np.int64)
        references = (
            np.concatenate(self.reference_classes) if self.reference_classes else np.zeros(0, dtype=np.int64)
        )
        kept = scores >= min_score
        renumbered = np.cumsum(kept) - 1
        rows, cols, ious = (
            (np.concatenate(part) for part in zip(*self.pairs)) if self.pairs else (np.zeros(0),) * 3
        )
        rows = np.asarray(rows, dtype=np.int64)
        keep_pair = kept[rows] if len(rows) else np.zeros(0, dtype=bool)
        pairs = IouPairs(
            renumbered[rows[keep_pair]], np.asarray(cols)[keep_pair], np.asarray(ious)[keep_pair]
        )
        return evaluate_objects(scores[kept], classes[kept], references, pairs, MATCH_IOU, names)


def _map_target(objects: Detections, height: int, width: int, instance: bool, scores: bool) -> dict:
    item = {
        "boxes": torch.from_numpy(objects.boxes).float(),
        "labels": torch.from_numpy(objects.class_ids).long(),
    }
    if scores:
        item["scores"] = torch.from_numpy(objects.scores).float()
    if instance:
        item["masks"] = torch.from_numpy(full_masks(objects, height, width))
    return item


def torchmetrics_inputs(chip: ChipDetections, instance: bool) -> tuple[dict, dict]:
    """(prediction, target) of one chip as torchmetrics' ``MeanAveragePrecision.update`` takes them."""
    height, width = chip.image.shape[-2:]
    return (
        _map_target(chip.detections, height, width, instance, scores=True),
        _map_target(chip.reference, height, width, instance, scores=False),
    )


def _none_for_missing(value: float) -> float | None:
    return None if value < 0 else value  # COCO's -1: no reference object of the class


def _map_results(computed: dict[str, Any], names: dict[int, str], instance: bool) -> dict[str, Any]:
    from .tasks.detection import map_values

    results = {}
    for iou_type in ("bbox", "segm") if instance else ("bbox",):
        mean, mean50, maps, ap50 = map_values(computed, iou_type, instance)
        prefix = f"{iou_type}_" if instance else ""
        results[iou_type] = {
            "map": _none_for_missing(mean),
            "map50": _none_for_missing(mean50),
            "map75": _none_for_missing(float(computed[f"{prefix}map_75"])),
            "classes": [
                {
                    "class_id": value,
                    "name": names.get(value, str(value)),
                    "map": _none_for_missing(maps[value]),
                    "map50": _none_for_missing(ap50.get(value, -1.0)),
                }
                for value in sorted(maps)
            ],
        }
    return results


# -- the report ---------------------------------------------------------------------------------


def evaluate_detection(
    net: nn.Module,
    spec: ModelSpec,
    batches: Iterable[dict[str, Any]],
    output_dir: str | os.PathLike,
    metrics_csv: str | os.PathLike | None = None,
    device: str = "cpu",
    samples: int = 6,
    max_batches: int | None = None,
    split: str = "val",
    score_threshold: float | None = None,
) -> dict[str, Any]:
    """Run a detector over ``batches`` and write the report (module docstring); returns the metrics.

    ``score_threshold``: the score an object needs to count in ``objects`` (default: the spec's
    ``det_conf``, else rsdl:detect's default)."""
    from .evaluate import write_metrics_json
    from .tasks.detection import mean_average_precision

    instance = spec.model_type is ModelType.INSTANCE_SEGMENTOR
    threshold, iou_threshold = detection_thresholds(spec, score_threshold)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    pools = {iou_type: ObjectPool(iou_type) for iou_type in (("bbox", "segm") if instance else ("bbox",))}
    metric: Any = None
    shown: list[ObjectSample] = []
    items = 0
    for chip in detect_chips(net, spec, batches, device, max_batches):
        if metric is None:
            metric = mean_average_precision(instance, chip.rows)
        if instance and not chip.reference.has_masks:
            raise RsdlError("An instance segmentation model needs reference masks (instance data).")
        prediction, target = torchmetrics_inputs(chip, instance)
        metric.update([prediction], [target])
        for pool in pools.values():
            pool.add(chip)
        if len(shown) < samples:
            shown.append(ObjectSample(chip.image, chip.reference, chip.detections))
        items += 1
    if metric is None:
        raise RsdlError("The evaluation data is empty: no batch to evaluate.")

    names = class_names(spec, len(spec.class_names))
    everything = {key: pool.evaluate(0.0, names) for key, pool in pools.items()}
    at_threshold = {key: pool.evaluate(threshold, names) for key, pool in pools.items()}
    result = {
        "model_type": spec.model_type.value,
        "split": split,
        "items": items,
        "references": sum(len(c) for c in pools["bbox"].reference_classes),
        "predictions": sum(len(s) for s in pools["bbox"].scores),
        "score_threshold": threshold,
        "nms_iou_threshold": iou_threshold,
        "match_iou_threshold": MATCH_IOU,
        "map": _map_results(metric.compute(), names, instance),
        "objects": {key: evaluation.as_dict() for key, evaluation in at_threshold.items()},
    }
    files = [
        _precision_recall_png(everything[key], at_threshold[key], threshold, output / name)
        for key, name in (("bbox", "precision_recall.png"), ("segm", "precision_recall_masks.png"))
        if key in pools
    ]
    if shown:
        files.append(write_object_grid(shown, spec, threshold, output / "detections.png"))
    if metrics_csv is not None:
        files.extend(write_training_curves(metrics_csv, output))
    result["files"] = sorted(path.name for path in files)
    write_metrics_json(result, output)
    return result


def _precision_recall_png(
    everything: ObjectEvaluation, at_threshold: ObjectEvaluation, threshold: float, path: Path
) -> Path:
    """The curves of every detection, each class's operating point at ``threshold`` marked."""
    figure = precision_recall_figure(everything.classes, MATCH_IOU)
    axes = figure.axes[0]
    points = [
        (row.recall, row.precision)
        for row in at_threshold.classes
        if row.references and row.precision is not None
    ]
    if points:
        recall, precision = zip(*points)
        axes.plot(recall, precision, "kx", markersize=8, label=f"score >= {threshold:g}")
        axes.legend(loc="lower left", fontsize=8)
    return save_png(figure, path)
