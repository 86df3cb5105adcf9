"""rsdl:modelinfo: what a model file says about itself, and what it needs from a raster."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from ..core.contract.model_spec import DEFAULT_MAX_PIXEL_VALUE, RUNNABLE_MODEL_TYPES, ModelType
from ..core.files.atomic_output import atomic_file
from ..inference.backends import ModelBackend, TensorInfo, load_model, output_channels
from .base_algorithm import RsdlAlgorithm

Section = tuple[str, list[tuple[str, str]]]


def _shape_text(info: TensorInfo) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in info.shape)
    return f"{info.name}: [{dims}] {info.dtype}"


def _numbers(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def model_classes(backend: ModelBackend) -> list[dict[str, Any]]:
    """Every named class of every head; unnamed channels of segmentation heads as class_<value>."""
    spec = backend.spec
    named = spec.head_class_names
    classes = []
    for head, output in enumerate(backend.outputs):
        channels = output_channels(spec.model_type, output.shape)
        if head < len(named) and named[head]:
            values = sorted(named[head])
        elif spec.model_type in (ModelType.SEGMENTOR, ModelType.CLASSIFIER) and channels:
            values = list(range(channels))
        else:
            values = []
        for value in values:
            color = spec.class_colors.get(value) if head == 0 else None  # colours are for head 1
            name = spec.class_name(value, head)
            classes.append({"head": head, "value": value, "name": name, "color": color})
    return classes


def describe_model(backend: ModelBackend) -> list[Section]:
    """The report as titled sections of (label, text) rows: logged and written as HTML."""
    spec = backend.spec
    runnable = "" if spec.model_type in RUNNABLE_MODEL_TYPES else " (rsdl does not run this type)"
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
    if spec.model_type is ModelType.SEGMENTOR:
        outputs.append(("Threshold (sigmoid outputs)", f"{spec.seg_thresh:g}"))
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


def report_html(title: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif}td{padding:2px 12px;vertical-align:top}"
        "td:first-child{font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, rows in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><table>")
        parts.extend(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(text)}</td></tr>" for label, text in rows
        )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


class ModelInfoAlgorithm(RsdlAlgorithm):
    NAME = "modelinfo"
    DISPLAY_NAME = "Model information"
    GROUP = "Inference"
    GROUP_ID = "inference"
    DESCRIPTION = (
        "Describes a model file (ONNX, or TorchScript with an rsdl spec) without running it on "
        "a raster: its type, input and output shapes, classes and colours, the bands and "
        "resolution it expects, its normalisation, the execution provider (CPU or GPU) it would "
        "run on, and any metadata rsdl does not use. Models of the Deepness plugin are read too. "
        "Pickled PyTorch files are refused without being opened."
    )

    MODEL = "MODEL"
    OUTPUT_HTML = "OUTPUT_HTML"
    MODEL_TYPE = "MODEL_TYPE"
    CLASSES = "CLASSES"
    INPUT_SHAPE = "INPUT_SHAPE"
    OUTPUT_SHAPES = "OUTPUT_SHAPES"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterFile(
                self.MODEL,
                self.tr("Model file"),
                fileFilter="Models (*.onnx *.pt *.ts *.torchscript);;All files (*)",
            ),
            "The model to describe: an ONNX file, or a TorchScript file carrying the rsdl spec. "
            "The content decides, not the extension.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_HTML,
                self.tr("Report (HTML)"),
                "HTML files (*.html)",
                optional=True,
                createByDefault=False,
            ),
            "Optional HTML page with the same report as the log.",
        )
        self.addOutput(QgsProcessingOutputString(self.MODEL_TYPE, self.tr("Model type")))
        self.addOutput(QgsProcessingOutputString(self.CLASSES, self.tr("Classes (JSON)")))
        self.addOutput(QgsProcessingOutputString(self.INPUT_SHAPE, self.tr("Input shape (JSON)")))
        self.addOutput(QgsProcessingOutputString(self.OUTPUT_SHAPES, self.tr("Output shapes (JSON)")))

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        path = self.parameterAsFile(parameters, self.MODEL, context)
        backend = load_model(path)
        sections = describe_model(backend)
        for heading, rows in sections:
            feedback.pushInfo(f"{heading}:")
            for label, text in rows:
                feedback.pushInfo(f"  {label}: {text}" if label else f"  {text}")

        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html_path:
            with atomic_file(html_path, sidecars=()) as temporary:
                temporary.write_text(report_html(f"Model: {Path(path).name}", sections), encoding="utf-8")
        return {
            self.MODEL_TYPE: backend.spec.declared_model_type,
            self.CLASSES: json.dumps(model_classes(backend)),
            self.INPUT_SHAPE: json.dumps(list(backend.inputs[0].shape)),
            self.OUTPUT_SHAPES: json.dumps([list(o.shape) for o in backend.outputs]),
            self.OUTPUT_HTML: html_path or None,
        }
