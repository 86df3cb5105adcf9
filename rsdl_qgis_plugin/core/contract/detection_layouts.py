"""Which output layout a detector (or instance segmentation) model has, from its spec and its output
shapes; models whose outputs no layout explains are refused here, before a run.

Layouts (B batch, N candidate rows, nc classes, nm mask coefficients; coordinates in pixels of the
input tile, x = column, y = row):

* **YOLOv5/v7** (Ultralytics' YOLOv5 export, Deepness's ``YOLO_v5_or_v7_default``):
  ``[B, N, 5 + nc]`` rows of ``cx, cy, w, h, objectness, class scores``. A row's class scores are
  ``objectness * class score``, as YOLOv5's own non-maximum suppression takes them (Deepness
  instead keeps the objectness alone as the score). Deepness's ``YOLO_v6`` has the same shape but
  its objectness column is ignored: the scores are the class scores.
* **YOLOv8/v11 detect** (Deepness's ``YOLO_v9`` and ``YOLO_Ultralytics``): ``[B, 4 + nc, N]``,
  ``cx, cy, w, h, class scores``, no objectness.
* **YOLO -seg** (``YOLO_Ultralytics_segmentation``): ``[B, 4 + nc + nm, N]`` (the last nm rows are
  mask coefficients) plus prototypes ``[B, nm, H/4, W/4]``; nm (usually 32) is read from the
  prototypes.
* **YOLO -obb** (``YOLO_Ultralytics_obb``): ``[B, 4 + nc + 1, N]``, the last row the box's angle in
  radians (Ultralytics' OBB convention, ``core/objects/detections.py``).
* **rsdl** (what rsdl's training export writes), recognised by the output names: ``boxes``
  ``[B, N, 4]`` float (``x1, y1, x2, y2``), ``scores`` ``[B, N]`` float (0 to 1), ``class_ids``
  ``[B, N]`` (int64, or float holding whole numbers) and, for instance segmentors, ``masks``
  ``[B, N, H, W]`` (each object's probability per pixel of the input tile). Rows past the model's
  objects are padding with score 0. The class count is that of the spec's class names.

The YOLO prediction output may come channels-first (``[B, C, N]``) or channels-last
(``[B, N, C]``): the smaller of its two non-batch dimensions is taken as the channels (a dynamic one
is the rows). Where shapes alone are ambiguous (YOLOv8 detect and -obb share a shape; YOLOv5 and a
channels-last YOLOv8), Deepness's ``det_type`` decides; else the class names' count (nc equal to
C - 4 is detect, C - 5 obb, or YOLOv5 when channels-last); else channels-first reads as YOLOv8
detect and channels-last as YOLOv5.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ModelSpecError
from .model_spec import ModelSpec, ModelType
from .model_types import DETECTOR_LAYOUTS

__all__ = [
    "RSDL_OUTPUT_NAMES",
    "DetectionLayout",
    "DetectionOutputs",
    "detection_outputs",
    "shapes_text",
]

# rsdl's own detector outputs, by name: boxes, scores, class ids, and masks (instance segmentors).
RSDL_OUTPUT_NAMES = ("boxes", "scores", "class_ids", "masks")


class DetectionLayout(str, enum.Enum):
    """The output layouts rsdl decodes (see the module docstring)."""

    YOLO_V5 = "YOLOv5/v7"
    YOLO_V8 = "YOLOv8/v11"
    YOLO_SEG = "YOLO -seg"
    YOLO_OBB = "YOLO -obb"
    RSDL = "rsdl"


# Deepness's det_type -> (layout, whether the objectness multiplies the class scores).
_DET_TYPES: dict[str, tuple[DetectionLayout, bool]] = {
    "YOLO_v5_or_v7_default": (DetectionLayout.YOLO_V5, True),
    "YOLO_v6": (DetectionLayout.YOLO_V5, False),
    "YOLO_v9": (DetectionLayout.YOLO_V8, False),
    "YOLO_Ultralytics": (DetectionLayout.YOLO_V8, False),
    "YOLO_Ultralytics_segmentation": (DetectionLayout.YOLO_SEG, False),
    "YOLO_Ultralytics_obb": (DetectionLayout.YOLO_OBB, False),
}


@dataclass(frozen=True)
class DetectionOutputs:
    """How to read a detector's outputs.

    YOLO layouts: ``predictions`` is the index of the prediction output, read as rows of values
    (transposed first unless ``channels_last``); class scores start at column ``class_start``;
    ``objectness`` says whether column 4 multiplies them; mask coefficients follow the class scores
    and ``prototypes`` is the prototype output's index. rsdl layout: ``predictions`` is the
    ``boxes`` output, ``scores``, ``class_ids`` and ``masks`` the others' indices.
    """

    layout: DetectionLayout
    class_count: int  # 0: not known (an rsdl model without class names)
    mask_coefficients: int = 0
    channels_last: bool = False
    objectness: bool = False
    predictions: int = 0
    prototypes: int | None = None
    scores: int | None = None
    class_ids: int | None = None
    masks: int | None = None

    @property
    def oriented(self) -> bool:
        """Whether objects are oriented boxes."""
        return self.layout is DetectionLayout.YOLO_OBB

    @property
    def has_masks(self) -> bool:
        """Whether objects come with instance masks."""
        return self.prototypes is not None or self.masks is not None

    @property
    def class_start(self) -> int:
        """The first class-score column of a YOLO prediction row."""
        return 5 if self.layout is DetectionLayout.YOLO_V5 else 4

    @property
    def description(self) -> str:
        """The layout as a log line says it, e.g. ``YOLOv8/v11 layout, 80 classes``."""
        parts = [f"{self.layout.value} layout"]
        if self.class_count:
            parts.append(f"{self.class_count} class{'es' if self.class_count != 1 else ''}")
        if self.layout is DetectionLayout.YOLO_V5 and not self.objectness:
            parts.append("objectness ignored")
        if self.has_masks:
            parts.append("instance masks")
        return ", ".join(parts)


def shapes_text(shapes: Sequence[Sequence[int | None]]) -> str:
    """``[1, 84, 8400] and [1, 32, 160, 160]`` (``?`` for a dynamic dimension)."""
    texts = ["[" + ", ".join("?" if d is None else str(d) for d in shape) + "]" for shape in shapes]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def detection_outputs(
    spec: ModelSpec,
    shapes: Sequence[Sequence[int | None]],
    names: Sequence[str] | None = None,
    model_name: str = "",
) -> DetectionOutputs:
    """The layout of a detector with outputs of ``shapes`` (None where dynamic) named ``names``.

    Raises a ``ModelSpecError`` naming the output shapes when no layout explains them, or when
    the spec's class names or ``det_type`` do not fit them.
    """
    shapes = [tuple(None if d is None or d < 1 else int(d) for d in shape) for shape in shapes]
    names = list(names) if names is not None else [""] * len(shapes)
    subject = f"The model '{model_name}'" if model_name else "The model"
    plural = "s" if len(shapes) != 1 else ""
    outputs_text = f"output{plural} {shapes_text(shapes)}" if shapes else "no outputs"

    def refuse(reason: str) -> ModelSpecError:
        return ModelSpecError(
            f"{subject} has {outputs_text}, which rsdl cannot read as a detector: {reason}. rsdl reads "
            f"{DETECTOR_LAYOUTS}."
        )

    if set(RSDL_OUTPUT_NAMES[:3]) <= set(names):
        layout = _rsdl_outputs(spec, shapes, names, refuse)
    else:
        layout = _yolo_outputs(spec, shapes, refuse)
    if spec.model_type is ModelType.INSTANCE_SEGMENTOR and not layout.has_masks:
        raise refuse(
            f"the model declares 'model_type' {ModelType.INSTANCE_SEGMENTOR.value}, but its "
            f"{layout.layout.value} outputs carry no masks (declare it a {ModelType.DETECTOR.value})"
        )
    return layout


def _rsdl_outputs(spec: ModelSpec, shapes: list[tuple], names: list[str], refuse) -> DetectionOutputs:
    if spec.det_type is not None:
        raise refuse(
            f"its outputs are named as rsdl's ({', '.join(RSDL_OUTPUT_NAMES[:3])}) but its 'det_type' "
            f"says {spec.det_type}; remove 'det_type' from the model's metadata"
        )
    index = {name: names.index(name) for name in RSDL_OUTPUT_NAMES if name in names}
    expected = {"boxes": (3, "[B, N, 4]"), "scores": (2, "[B, N]"), "class_ids": (2, "[B, N]")}
    if "masks" in index:
        expected["masks"] = (4, "[B, N, H, W]")
    for name, (rank, text) in expected.items():
        shape = shapes[index[name]]
        if len(shape) != rank or (name == "boxes" and shape[2] not in (4, None)):
            raise refuse(f"rsdl's output '{name}' must be {text}, not {shapes_text([shape])}")
    rows = {shapes[index[name]][1] for name in expected} - {None}
    if len(rows) > 1:
        raise refuse(f"rsdl's outputs {', '.join(expected)} must have the same number of rows N")
    return DetectionOutputs(
        DetectionLayout.RSDL,
        len(spec.class_names),
        predictions=index["boxes"],
        scores=index["scores"],
        class_ids=index["class_ids"],
        masks=index.get("masks"),
    )


def _yolo_outputs(spec: ModelSpec, shapes: list[tuple], refuse) -> DetectionOutputs:
    predictions = [i for i, shape in enumerate(shapes) if len(shape) == 3]
    prototypes = [i for i, shape in enumerate(shapes) if len(shape) == 4]
    if not predictions:
        raise refuse("it has no prediction output [B, values, N] or [B, N, values]")
    if len(predictions) != 1 or len(prototypes) > 1 or len(predictions) + len(prototypes) != len(shapes):
        raise refuse(
            "a YOLO detector has one prediction output [B, values, N] or [B, N, values] (and an "
            "-seg model one prototype output [B, M, H, W])"
        )
    index = predictions[0]
    _, first, second = shapes[index]
    if first is None and second is None:
        raise refuse("both non-batch dimensions of its prediction output are dynamic")
    channels_last = first is None or (second is not None and second < first)
    channels = second if channels_last else first
    proto = prototypes[0] if prototypes else None
    mask_coefficients = 0
    if proto is not None:
        mask_coefficients = shapes[proto][1]
        if mask_coefficients is None:
            raise refuse("its prototype output's channel count (mask coefficients) is dynamic")

    named = len(spec.class_names) if spec.class_names else None
    objectness = False
    if spec.det_type is not None:
        layout, objectness = _DET_TYPES[spec.det_type]
        if (layout is DetectionLayout.YOLO_SEG) != (proto is not None):
            raise refuse(
                f"its 'det_type' {spec.det_type} needs "
                + ("a prototype output [B, M, H, W]" if proto is None else "one output, not prototypes")
            )
    elif proto is not None:
        layout = DetectionLayout.YOLO_SEG
    else:
        # Shapes alone: channels-last is YOLOv5's, channels-first YOLOv8's; class names settle the
        # obb and transposed-v8 cases.
        if channels_last:
            layout = DetectionLayout.YOLO_V8 if named == channels - 4 else DetectionLayout.YOLO_V5
        else:
            layout = DetectionLayout.YOLO_OBB if named == channels - 5 else DetectionLayout.YOLO_V8
        objectness = layout is DetectionLayout.YOLO_V5

    fixed = {
        DetectionLayout.YOLO_V5: 5,
        DetectionLayout.YOLO_V8: 4,
        DetectionLayout.YOLO_SEG: 4 + mask_coefficients,
        DetectionLayout.YOLO_OBB: 5,
    }[layout]
    count = channels - fixed
    columns = {
        DetectionLayout.YOLO_V5: "x, y, w, h, objectness and class scores",
        DetectionLayout.YOLO_V8: "x, y, w, h and class scores",
        DetectionLayout.YOLO_SEG: f"x, y, w, h, class scores and {mask_coefficients} mask coefficients",
        DetectionLayout.YOLO_OBB: "x, y, w, h, class scores and an angle",
    }[layout]
    if count < 1:
        raise refuse(f"as {layout.value}, {channels} values per row cannot hold {columns}")
    if named is not None and named != count:
        raise refuse(
            f"as {layout.value} ({columns}) its {channels} values per row hold {count} class scores, but "
            f"'class_names' names {named} classes; fix 'class_names'"
            + ("" if spec.det_type else " or set Deepness's 'det_type'")
        )
    return DetectionOutputs(
        layout,
        count,
        mask_coefficients=mask_coefficients,
        channels_last=channels_last,
        objectness=objectness,
        predictions=index,
        prototypes=proto,
    )
