"""What a model file says about itself, as a report (rsdl:modelinfo's log and HTML page). QGIS-free."""

from __future__ import annotations

import json
from typing import Any

from ..core.contract.model_spec import DEFAULT_MAX_PIXEL_VALUE
from ..core.contract.model_types import role_of
from ..core.errors import ModelSpecError
from ..core.reports.sections import Section
from .backends import ModelBackend, TensorInfo, output_channels
from .detector import ObjectDecoder, detection_thresholds

__all__ = ["describe_model", "model_classes"]


def _shape_text(info: TensorInfo) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in info.shape)
    return f"{info.name}: [{dims}] {info.dtype}"


def _numbers(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def model_classes(backend: ModelBackend) -> list[dict[str, Any]]:
    """Every named class of every head; unnamed channels of segmentation heads as class_<value>."""
    spec = backend.spec
    role = role_of(spec.model_type)
    named = spec.head_class_names
    classes = []
    for head, output in enumerate(backend.outputs):
        channels = output_channels(spec.model_type, output.shape)
        if head < len(named) and named[head]:
            values = sorted(named[head])
        elif channels and role is not None and role.class_scores:
            values = list(range(channels))
        else:
            values = []
        for value in values:
            color = spec.class_colors.get(value) if head == 0 else None  # colours are for head 1
            name = spec.class_name(value, head)
            classes.append({"head": head, "value": value, "name": name, "color": color})
    return classes


def _detector_rows(backend: ModelBackend) -> list[tuple[str, str]]:
    """How rsdl:detect reads a detector: its layout (or why it cannot) and its default thresholds."""
    spec = backend.spec
    try:
        layout = ObjectDecoder.for_backend(backend).layout_name
    except ModelSpecError as error:
        layout = f"not readable by rsdl:detect: {error}"
    confidence, iou = detection_thresholds(spec)
    source = "the model's" if spec.det_conf is not None else "rsdl's default"
    iou_source = "the model's" if spec.det_iou_thresh is not None else "rsdl's default"
    rows = [
        ("Detection layout", layout),
        ("Confidence threshold (det_conf)", f"{confidence:g} ({source})"),
        ("IoU threshold (det_iou_thresh)", f"{iou:g} ({iou_source})"),
    ]
    if spec.det_type:
        rows.append(("Detector type (det_type)", spec.det_type))
    return rows


def describe_model(backend: ModelBackend) -> list[Section]:
    """The report as titled sections of (label, text) rows: logged and written as HTML."""
    spec = backend.spec
    role = role_of(spec.model_type)
    runnable = f" (run by {', '.join(role.tools)})" if role else " (rsdl does not run this type)"
    version = str(spec.spec_version) if spec.spec_version else "none (not written by rsdl)"
    model = [
        ("File", backend.path),
        ("Format", backend.format.value),
        ("Model type", spec.declared_model_type + runnable),
        ("Execution provider", backend.provider),
        ("rsdl spec version", version),
    ]
    channels = backend.input_channels
    bands = (
        ", ".join(str(b) for b in spec.bands)
        if spec.bands
        else f"the first {channels} band(s) of the raster (1 to {channels})"
    )
    fixed = backend.input_size[0] if backend.input_size[0] == backend.input_size[1] else None
    if fixed and spec.tile_size and fixed != spec.tile_size:  # the input wins: nothing else runs
        tile_text = f"{fixed} px (fixed by the model's input; its metadata says {spec.tile_size})"
    else:
        tile = fixed or spec.tile_size
        tile_text = f"{tile} px" if tile else "not stated"
    overlap = spec.tiles_overlap_percent
    inputs = [
        *(("Input", _shape_text(i)) for i in backend.inputs),
        ("Expected bands", bands),
        ("Batch size", str(backend.fixed_batch) if backend.fixed_batch else "any"),
        ("Tile size", tile_text),
        ("Tile overlap", f"{overlap:g} %" if overlap is not None else "not stated"),
        (
            "Resolution",
            f"{spec.resolution_cm:g} cm/px ({spec.resolution_cm / 100:g} m)"
            if spec.resolution_cm
            else "not stated (the raster's own)",
        ),
    ]
    scale = f"{spec.max_pixel_value:g}" + (
        "" if spec.max_pixel_value != DEFAULT_MAX_PIXEL_VALUE else " (8-bit imagery)"
    )
    normalisation = [
        ("Formula", "(x / max_pixel_value - mean) / std, per band"),
        ("max_pixel_value", scale),
        ("mean", _numbers(spec.standardization_mean)),
        ("std", _numbers(spec.standardization_std)),
    ]
    outputs = [(f"Output {index + 1}", _shape_text(o)) for index, o in enumerate(backend.outputs)]
    if role is not None and role.class_scores and role.per_pixel:
        if spec.seg_thresh is None:
            threshold = f"{spec.one_channel_threshold:g} for one channel; none for several (argmax)"
        else:  # Deepness's meaning: every channel
            threshold = f"{spec.seg_thresh:g} for every channel (class 0 where none reaches it)"
        outputs.append(("Threshold (seg_thresh)", threshold))
    if role is not None and "rsdl:detect" in role.tools:
        outputs.extend(_detector_rows(backend))
    if spec.ignore_index is not None:
        outputs.append(("Ignore index", str(spec.ignore_index)))
    classes = [
        (f"head {c['head'] + 1}, value {c['value']}", f"{c['name']}  {c['color'] or '(no colour)'}")
        for c in model_classes(backend)
    ]
    sections: list[Section] = [
        ("Model", model),
        ("Input", inputs),
        ("Normalisation", normalisation),
        ("Outputs", outputs),
        ("Classes", classes or [("", "none named")]),
    ]
    if spec.training:
        training = [(key, json.dumps(value)) for key, value in sorted(spec.training.items())]
        sections.append(("Training", training))
    if spec.extra:
        sections.append(("Other metadata (kept, not used)", sorted(spec.extra.items())))
    return sections
