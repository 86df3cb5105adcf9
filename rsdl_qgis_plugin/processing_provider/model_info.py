"""rsdl:modelinfo: what a model file says about itself, and what it needs from a raster."""

from __future__ import annotations

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

from ..core.files.atomic_output import atomic_file
from ..core.reports.sections import section_lines, sections_html
from ..inference.backends import load_model
from ..inference.model_report import describe_model, model_classes
from .base_algorithm import RsdlAlgorithm


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
        for line in section_lines(sections):
            feedback.pushInfo(line)

        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html_path:
            with atomic_file(html_path, sidecars=()) as temporary:
                temporary.write_text(sections_html(f"Model: {Path(path).name}", sections), encoding="utf-8")
        return {
            self.MODEL_TYPE: backend.spec.declared_model_type,
            self.CLASSES: json.dumps(model_classes(backend)),
            self.INPUT_SHAPE: json.dumps(list(backend.inputs[0].shape)),
            self.OUTPUT_SHAPES: json.dumps([list(o.shape) for o in backend.outputs]),
            self.OUTPUT_HTML: html_path or None,
        }
