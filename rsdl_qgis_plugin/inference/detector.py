"""Raw detector outputs of a batch of tiles -> one ``Detections`` per tile, in the tile's pixels.

QGIS-free, numpy only (no torch, no cv2). The layout comes from ``core/contract/detection_layouts.py``.
Per tile:

1. each candidate row's score is its best class score (YOLOv5: objectness x class score; rsdl: its
   ``scores``) and its class that class; rows scoring below the confidence (or 0) are dropped, and
   so are rows holding NaN or infinity (counted in ``non_finite_rows``). A score above 1 (logits,
   not probabilities) is refused. Of more than ``MAX_CANDIDATES`` rows left, only the best-scoring
   ``MAX_CANDIDATES`` go on (Ultralytics' ``max_nms``; counted in ``capped_tiles``), which bounds
   the suppression's time and memory;
2. boxes ``cx, cy, w, h`` become ``x1, y1, x2, y2`` clipped to the tile; boxes left empty by the
   clipping are dropped. Oriented boxes are not clipped: they are regularised as Ultralytics does
   (``w >= h``, the angle in ``[0, pi)``) and their enclosing box is computed;
3. greedy non-maximum suppression per class (or across classes), ``core.objects.overlap.nms``:
   oriented boxes overlap as oriented boxes; no cap on the number of objects;
4. YOLO -seg masks: ``sigmoid(coefficients @ prototypes)``, zeroed outside the box at prototype
   resolution, upsampled bilinearly (as torch's ``F.interpolate(..., align_corners=False)``) to the
   tile size over the box's pixels only, and kept where above 0.5. rsdl masks: the model's
   probabilities within the box, above 0.5. Each ``InstanceMask`` is cut to the box's pixels.

Thresholds when the caller gives none: the model's ``det_conf`` / ``det_iou_thresh`` (Deepness's
keys), else Ultralytics' defaults 0.25 and 0.45 (``detection_thresholds``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.contract.detection_layouts import (
    DetectionLayout,
    DetectionOutputs,
    detection_outputs,
    shapes_text,
)
from ..core.contract.model_spec import ModelSpec
from ..core.errors import ModelError
from ..core.objects.detections import Detections, InstanceMask
from ..core.objects.overlap import nms

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_IOU_THRESHOLD",
    "MASK_THRESHOLD",
    "MAX_CANDIDATES",
    "ObjectDecoder",
    "detection_thresholds",
]

DEFAULT_CONFIDENCE = 0.25  # Ultralytics' predict default
DEFAULT_IOU_THRESHOLD = 0.45  # Ultralytics' NMS default (YOLOv5's and v8's predict)
MASK_THRESHOLD = 0.5
MAX_CANDIDATES = 30_000  # rows of one tile into non-maximum suppression (Ultralytics' max_nms)
_SCORE_TOLERANCE = 1e-4  # a probability computed in float32 may pass 1 by rounding


def detection_thresholds(
    spec: ModelSpec, confidence: float | None = None, iou_threshold: float | None = None
) -> tuple[float, float]:
    """(confidence, IoU threshold): the caller's, else the model's ``det_conf`` / ``det_iou_thresh``,
    else ``DEFAULT_CONFIDENCE`` / ``DEFAULT_IOU_THRESHOLD``."""
    if confidence is None:
        confidence = spec.det_conf if spec.det_conf is not None else DEFAULT_CONFIDENCE
    if iou_threshold is None:
        iou_threshold = spec.det_iou_thresh if spec.det_iou_thresh is not None else DEFAULT_IOU_THRESHOLD
    return float(confidence), float(iou_threshold)


class ObjectDecoder:
    """Decodes one detector's outputs (see the module docstring); refuses, when built, a model whose
    outputs no layout explains (``ModelSpecError`` naming the shapes)."""

    def __init__(
        self,
        spec: ModelSpec,
        output_shapes: Sequence[Sequence[int | None]],
        output_names: Sequence[str] | None = None,
        model_name: str = "",
    ) -> None:
        self.spec = spec
        self.model_name = model_name
        self.layout: DetectionOutputs = detection_outputs(spec, output_shapes, output_names, model_name)
        self._declared = [tuple(None if d is None or d < 1 else int(d) for d in s) for s in output_shapes]
        self.non_finite_rows = 0  # candidate rows dropped for NaN or infinite values, over all decodes
        self.capped_tiles = 0  # tiles whose candidates were cut to MAX_CANDIDATES

    @classmethod
    def for_backend(cls, backend: Any) -> ObjectDecoder:
        """The decoder of a loaded ``ModelBackend`` (its spec and its outputs' names and shapes)."""
        path = getattr(backend, "path", "") or ""
        return cls(
            backend.spec,
            [o.shape for o in backend.outputs],
            [o.name for o in backend.outputs],
            path.replace("\\", "/").rsplit("/", 1)[-1],
        )

    @property
    def class_count(self) -> int:
        """Classes the model scores (0 for an rsdl model that names none)."""
        return self.layout.class_count

    @property
    def oriented(self) -> bool:
        return self.layout.oriented

    @property
    def has_masks(self) -> bool:
        return self.layout.has_masks

    @property
    def layout_name(self) -> str:
        """E.g. ``YOLOv8/v11 layout, 3 classes``."""
        return self.layout.description

    def decode(
        self,
        outputs: Sequence[np.ndarray],
        confidence: float | None,
        iou_threshold: float | None,
        class_agnostic: bool,
        tile_size: int,
    ) -> list[Detections]:
        """One ``Detections`` per batch item, in pixels of its ``tile_size`` x ``tile_size`` tile,
        highest score first."""
        confidence, iou_threshold = detection_thresholds(self.spec, confidence, iou_threshold)
        layout = self.layout
        batch = len(outputs[layout.predictions])
        for index, output in enumerate(outputs):
            if len(output) != batch:
                raise ModelError(
                    f"The detector's output {index + 1} has {len(output)} items for a batch of {batch}."
                )
        self._check_shapes(outputs)
        decode_one = self._rsdl if layout.layout is DetectionLayout.RSDL else self._yolo
        return [
            decode_one(outputs, item, confidence, iou_threshold, class_agnostic, tile_size)
            for item in range(batch)
        ]

    def _subject(self) -> str:
        return f"The detector '{self.model_name}'" if self.model_name else "The detector"

    def _check_shapes(self, outputs: Sequence[np.ndarray]) -> None:
        """Refuse outputs whose shape is not the one the layout was read from: a model whose shapes
        change between batches would otherwise be read with the wrong columns."""
        layout = self.layout
        expected: dict[int, tuple[int, int]] = {}  # output -> (axis, size) the layout relies on
        if layout.layout is not DetectionLayout.RSDL:
            channels = layout.class_start + layout.class_count + layout.mask_coefficients + layout.oriented
            expected[layout.predictions] = (2 if layout.channels_last else 1, channels)
            if layout.prototypes is not None:
                expected[layout.prototypes] = (1, layout.mask_coefficients)
        else:
            rows = outputs[layout.predictions].shape[1] if outputs[layout.predictions].ndim > 1 else -1
            expected[layout.predictions] = (2, 4)
            for index in (layout.scores, layout.class_ids, layout.masks):
                if index is not None:
                    expected[index] = (1, rows)
        # Only what the layout relies on: a TorchScript model's probed shapes fix more than it does.
        for index, (output, declared) in enumerate(zip(outputs, self._declared)):
            shape = tuple(output.shape)
            axis, size = expected.get(index, (0, shape[0] if shape else 0))
            if len(shape) != len(declared) or shape[axis] != size:
                raise ModelError(
                    f"{self._subject()} gave output {index + 1} of shape {list(shape)}, but it declares "
                    f"{shapes_text([declared])} and was read as {layout.description}: its outputs "
                    "changed shape between batches. Export the model with fixed output shapes (or "
                    "dynamic only in the batch and the number of rows)."
                )

    def _check_scores(self, scores: np.ndarray) -> None:
        """Refuse scores above 1: logits read as probabilities would pass any threshold."""
        if len(scores) and scores.max() > 1 + _SCORE_TOLERANCE:
            raise ModelError(
                f"{self._subject()} gave a score of {scores.max():g}; rsdl reads detector scores as "
                "probabilities from 0 to 1, and these look like logits. Export the model with its "
                "final sigmoid (Ultralytics' exports include it)."
            )

    def _candidates(self, usable: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``usable`` (bool rows) cut to the ``MAX_CANDIDATES`` best scores, rows kept in order."""
        self._check_scores(scores[usable])
        rows = np.flatnonzero(usable)
        if len(rows) <= MAX_CANDIDATES:
            return usable
        self.capped_tiles += 1
        best = rows[np.argsort(-scores[rows], kind="stable")[:MAX_CANDIDATES]]
        capped = np.zeros_like(usable)
        capped[best] = True
        return capped

    # -- per tile ----------------------------------------------------------------------------

    def _yolo(
        self,
        outputs: Sequence[np.ndarray],
        item: int,
        confidence: float,
        iou_threshold: float,
        class_agnostic: bool,
        tile: int,
    ) -> Detections:
        layout = self.layout
        prediction = np.asarray(outputs[layout.predictions][item], dtype=np.float64)
        rows = prediction if layout.channels_last else prediction.T
        start, count = layout.class_start, layout.class_count
        class_scores = rows[:, start : start + count]
        if layout.objectness:
            class_scores = class_scores * rows[:, 4:5]
        class_ids = np.argmax(class_scores, axis=1)
        scores = np.take_along_axis(class_scores, class_ids[:, None], axis=1)[:, 0]
        finite = np.isfinite(rows[:, :4]).all(axis=1) & np.isfinite(scores)
        if layout.oriented:
            finite &= np.isfinite(rows[:, start + count])
        self.non_finite_rows += int(np.count_nonzero(~finite))
        with np.errstate(invalid="ignore"):
            keep = self._candidates(finite & (scores >= confidence) & (scores > 0), scores)
        rows, scores, class_ids = rows[keep], scores[keep], class_ids[keep]
        cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]

        if layout.oriented:
            angle = rows[:, start + count]
            swap = w < h  # Ultralytics' regularize_rboxes: the longer side is w
            oriented = np.stack(
                [
                    cx,
                    cy,
                    np.where(swap, h, w),
                    np.where(swap, w, h),
                    np.mod(angle + swap * (math.pi / 2), math.pi),
                ],
                axis=1,
            )
            real = (oriented[:, 2] > 0) & (oriented[:, 3] > 0)
            detections = Detections.from_oriented(oriented[real], scores[real], class_ids[real])
            return detections.select(nms(detections, iou_threshold, class_agnostic))

        boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), 0, tile)
        real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        detections = Detections(boxes[real], scores[real], class_ids[real])
        kept = nms(detections, iou_threshold, class_agnostic)
        detections = detections.select(kept)
        if layout.prototypes is None:
            return detections
        first = start + count
        coefficients = rows[real][kept][:, first : first + layout.mask_coefficients]
        prototypes = np.asarray(outputs[layout.prototypes][item], dtype=np.float64)
        detections.masks = _prototype_masks(coefficients, prototypes, detections.boxes, tile)
        return detections

    def _rsdl(
        self,
        outputs: Sequence[np.ndarray],
        item: int,
        confidence: float,
        iou_threshold: float,
        class_agnostic: bool,
        tile: int,
    ) -> Detections:
        layout = self.layout
        boxes = np.asarray(outputs[layout.predictions][item], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(outputs[layout.scores][item], dtype=np.float64).reshape(-1)
        class_ids = np.rint(np.asarray(outputs[layout.class_ids][item], dtype=np.float64)).reshape(-1)
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & np.isfinite(class_ids)
        self.non_finite_rows += int(np.count_nonzero(~finite))
        with np.errstate(invalid="ignore"):  # padding rows score 0
            keep = self._candidates(finite & (scores >= confidence) & (scores > 0), scores)
        count = layout.class_count
        if count and ((class_ids[keep] < 0) | (class_ids[keep] >= count)).any():
            wrong = class_ids[keep][(class_ids[keep] < 0) | (class_ids[keep] >= count)]
            raise ModelError(
                f"{self._subject()} gave class id {int(wrong[0])}, but its 'class_names' name {count} "
                f"classes (0 to {count - 1}). Fix the model's class names or its class_ids output."
            )
        boxes = np.clip(boxes[keep], 0, tile)
        real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        rows = np.flatnonzero(keep)[real]
        detections = Detections(boxes[real], scores[keep][real], class_ids[keep][real].astype(np.int64))
        kept = nms(detections, iou_threshold, class_agnostic)
        detections = detections.select(kept)
        if layout.masks is not None:
            probabilities = outputs[layout.masks][item]
            detections.masks = [
                _cut(probabilities[row], box) for row, box in zip(rows[kept], detections.boxes)
            ]
        return detections


# -- masks ---------------------------------------------------------------------------------------


def _pixel_span(low: float, high: float, size: int) -> tuple[int, int]:
    """The pixels [first, stop) a box side from ``low`` to ``high`` touches, within the tile."""
    return max(0, math.floor(low)), min(size, math.ceil(high))


def _cut(probabilities: np.ndarray, box: np.ndarray) -> InstanceMask:
    rows, cols = probabilities.shape[-2:]
    r0, r1 = _pixel_span(box[1], box[3], rows)
    c0, c1 = _pixel_span(box[0], box[2], cols)
    return InstanceMask(r0, c0, np.asarray(probabilities[r0:r1, c0:c1]) > MASK_THRESHOLD)


def _bilinear_weights(first: int, stop: int, source: int, target: int) -> tuple[np.ndarray, int]:
    """Rows ``first..stop-1`` of a ``target``-long axis as weights over source cells (the matrix
    torch's bilinear resize with ``align_corners=False`` applies), and the first source cell used."""
    out = np.arange(first, stop, dtype=np.float64)
    position = np.maximum((out + 0.5) * (source / target) - 0.5, 0.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    fraction = position - low
    base = int(low.min()) if len(low) else 0
    span = (int(high.max()) - base + 1) if len(high) else 0
    weights = np.zeros((len(out), span))
    lines = np.arange(len(out))
    np.add.at(weights, (lines, low - base), 1.0 - fraction)
    np.add.at(weights, (lines, high - base), fraction)
    return weights, base


def _prototype_masks(
    coefficients: np.ndarray, prototypes: np.ndarray, boxes: np.ndarray, tile: int
) -> list[InstanceMask]:
    """YOLO -seg masks of each box (see the module docstring), cut to the box's pixels."""
    _, proto_rows, proto_cols = prototypes.shape
    masks = []
    for coefficient, box in zip(coefficients, boxes):
        r0, r1 = _pixel_span(box[1], box[3], tile)
        c0, c1 = _pixel_span(box[0], box[2], tile)
        row_weights, row_base = _bilinear_weights(r0, r1, proto_rows, tile)
        col_weights, col_base = _bilinear_weights(c0, c1, proto_cols, tile)
        rows = slice(row_base, row_base + row_weights.shape[1])
        cols = slice(col_base, col_base + col_weights.shape[1])
        logits = np.tensordot(coefficient, prototypes[:, rows, cols], axes=1)
        small = 1.0 / (1.0 + np.exp(-logits))
        # Ultralytics' crop_mask: prototype cells whose index lies in the box scaled to them.
        proto_r = np.arange(rows.start, rows.stop)[:, None]
        proto_c = np.arange(cols.start, cols.stop)[None, :]
        scale_r, scale_c = proto_rows / tile, proto_cols / tile
        inside = (
            (proto_c >= box[0] * scale_c)
            & (proto_c < box[2] * scale_c)
            & (proto_r >= box[1] * scale_r)
            & (proto_r < box[3] * scale_r)
        )
        upsampled = row_weights @ (small * inside) @ col_weights.T
        masks.append(InstanceMask(r0, c0, upsampled > MASK_THRESHOLD))
    return masks
