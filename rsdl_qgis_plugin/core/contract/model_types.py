"""The registry of model types: for each type, which tools run it, which output layouts it has, and
its tiling defaults. Every "can this tool run this model?" question is answered here, so a new
model type is one entry plus the modules that run it.

A Segmentor declaration is also what a model without ``model_type`` reads as (Deepness's default),
so the classification tools accept it and let its output shape decide (``inference/classifier.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelSpecError
from .model_spec import ModelSpec, ModelType

__all__ = [
    "DETECTOR_LAYOUTS",
    "MODEL_TYPE_ROLES",
    "RUNNABLE_MODEL_TYPES",
    "ModelTypeRole",
    "refuse_unless_run_by",
    "role_of",
]


@dataclass(frozen=True)
class ModelTypeRole:
    """What rsdl does with one model type."""

    model_type: ModelType
    tools: tuple[str, ...]  # the Processing algorithms (and commands) that run it, first = main one
    head_layouts: str  # the output layouts it may have, as said in help texts and refusals
    class_scores: bool  # outputs are class scores (read as probabilities), not values
    per_pixel: bool  # outputs are maps ([B, C, H, W]), not one row per crop ([B, C])
    default_tile_size: int  # pixels, when neither the model nor the user says
    default_batch_size: int  # tiles or crops per model call


# The output layouts of detectors and instance segmentors (core/contract/detection_layouts.py).
DETECTOR_LAYOUTS = (
    "YOLOv5/v7 [B, N, 5 + classes] (x, y, w, h, objectness, class scores); YOLOv8/v11 (Deepness's "
    "YOLO_v9, YOLO_Ultralytics) [B, 4 + classes, N]; YOLO -seg [B, 4 + classes + M, N] with "
    "prototypes [B, M, H/4, W/4]; YOLO -obb [B, 4 + classes + 1, N] (angle last); rsdl's named "
    "outputs boxes [B, N, 4] (x1, y1, x2, y2), scores [B, N], class_ids [B, N] and optional masks "
    "[B, N, H, W]"
)

MODEL_TYPE_ROLES: dict[ModelType, ModelTypeRole] = {
    role.model_type: role
    for role in (
        ModelTypeRole(
            ModelType.SEGMENTOR,
            tools=("rsdl:segment", "python -m training predict"),
            head_layouts="[B, C, H, W] class scores or probabilities; [B, H, W] or [B, 1, H, W] one "
            "sigmoid channel",
            class_scores=True,
            per_pixel=True,
            default_tile_size=512,
            default_batch_size=4,
        ),
        ModelTypeRole(
            ModelType.REGRESSOR,
            tools=("rsdl:segment", "python -m training predict"),
            head_layouts="[B, C, H, W] values per pixel (C bands out)",
            class_scores=False,
            per_pixel=True,
            default_tile_size=512,
            default_batch_size=4,
        ),
        ModelTypeRole(
            ModelType.CLASSIFIER,
            tools=("rsdl:classifytiles", "rsdl:classifyfeatures"),
            head_layouts="[B, C] or [B, C, 1, 1] class scores or probabilities; [B, 1] one sigmoid score",
            class_scores=True,
            per_pixel=False,
            default_tile_size=224,  # the usual input of image classifiers (ResNet, EfficientNet...)
            default_batch_size=16,
        ),
        ModelTypeRole(
            ModelType.DETECTOR,
            tools=("rsdl:detect", "python -m training predict"),
            head_layouts=DETECTOR_LAYOUTS,
            class_scores=False,  # per-object scores, decoded by inference/detector.py
            per_pixel=False,
            default_tile_size=640,  # YOLO's input size
            default_batch_size=4,
        ),
        ModelTypeRole(
            ModelType.INSTANCE_SEGMENTOR,
            tools=("rsdl:detect", "python -m training predict"),
            head_layouts=DETECTOR_LAYOUTS,
            class_scores=False,
            per_pixel=False,
            default_tile_size=640,
            default_batch_size=4,
        ),
    )
}

RUNNABLE_MODEL_TYPES = frozenset(MODEL_TYPE_ROLES)


def role_of(model_type: ModelType) -> ModelTypeRole | None:
    """The role of a model type; None for types rsdl reads but does not run."""
    return MODEL_TYPE_ROLES.get(model_type)


def _runs(tool: str, model_type: ModelType) -> bool:
    role = role_of(model_type)
    return role is not None and tool in role.tools


def refuse_unless_run_by(
    spec: ModelSpec, tool: str, model_name: str = "", undeclared_ok: bool = False
) -> None:
    """Raise a ``ModelSpecError`` naming the right tool unless ``tool`` runs this model's type.

    ``undeclared_ok``: a Segmentor declaration passes too (it is what a model without metadata
    reads as); the caller then decides from the model's outputs.
    """
    if _runs(tool, spec.model_type) or (undeclared_ok and spec.model_type is ModelType.SEGMENTOR):
        return
    kinds = [t.value for t in ModelType if _runs(tool, t)]
    # "A and B", "A, B and C"
    kinds_text = " and ".join([", ".join(kinds[:-1]), kinds[-1]]) if len(kinds) > 1 else "".join(kinds)
    role = role_of(spec.model_type)
    if role is not None:
        advice = f"Use {' or '.join(role.tools)} for {spec.model_type.value} models"
    else:
        advice = f"rsdl runs no tool for {spec.declared_model_type} models yet"
    subject = f"The model '{model_name}'" if model_name else "The model"
    raise ModelSpecError(
        f"{subject} is a '{spec.declared_model_type}' model (metadata key 'model_type'); {tool} runs "
        f"{kinds_text} models. {advice}, or fix 'model_type' if the model was exported with the wrong one."
    )
