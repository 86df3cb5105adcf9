"""Write the Graphical Modeler model the plugin ships, with the QGIS API (never by hand).

    python scripts/build_modeler_model.py [OUTPUT.model3]
    python scripts/build_modeler_model.py --summary MODEL.model3 [...]   (JSON, see model_summary)

The model, "Segment and evaluate against labels" (``rsdl:rasterize_segment_evaluate``), chains
rsdl:segment -> rsdl:rasterizelabels -> rsdl:evaluate: the image is segmented, the label layers
are rasterized onto the class raster's grid (so the chain holds when segment resamples to the
model's resolution) and the class raster is scored against that mask. The provider loads every
``.model3`` in ``rsdl_qgis_plugin/models``. tests/e2e/test_modeler.py checks that running this
script reproduces the committed file (on QGIS 3.22, which wrote it; newer QGIS writes models in
another form, so there the two files are compared as that QGIS loads them, with ``--summary``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL_NAME = "rasterize_segment_evaluate"
DEFAULT_OUTPUT = REPO / "rsdl_qgis_plugin" / "models" / f"{MODEL_NAME}.model3"
DESCRIPTION = (
    "Segments an image with a model, rasterizes vector labels onto the class raster's grid by "
    "the rules of 'Rasterize labels to a class mask', and scores the classes against them with "
    "'Evaluate a class raster against reference labels'. Classes are matched by name (a text "
    "class field works whatever values the model uses). Outputs: the styled class raster, the "
    "label mask and the evaluation report (HTML) and per-class table (CSV)."
)
HELP = {
    "image": "The image to segment (any raster layer rsdl:segment reads).",
    "labels": "Vector layers of reference labels (polygons, lines or points), in any CRS.",
    "class_field": "Field holding each label's class: text class names (matched to the model's "
    "class names) or whole numbers. Empty: one class per layer.",
    "unlabelled": "0: unlabelled area is background (complete labels). 1: ignore (sparse samples): "
    "only labelled pixels are scored.",
    "model": "The segmentation model (ONNX, or TorchScript with the rsdl spec).",
}


def _position(column: int, row: int) -> object:
    from qgis.PyQt.QtCore import QPointF

    return QPointF(120.0 + 260.0 * column, 80.0 + 110.0 * row)


def build_model() -> object:
    """The model (a ``QgsProcessingModelAlgorithm``); the rsdl provider must be registered."""
    from qgis.core import (
        QgsProcessing,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterEnum,
        QgsProcessingParameterFile,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterString,
    )

    from rsdl_qgis_plugin.qgis_io.compat import SOURCE_VECTOR_ANY_GEOMETRY

    model = QgsProcessingModelAlgorithm(MODEL_NAME, "Workflows", "workflows")
    parameters = [
        QgsProcessingParameterRasterLayer("image", "Image raster"),
        QgsProcessingParameterMultipleLayers("labels", "Label layers", SOURCE_VECTOR_ANY_GEOMETRY),
        QgsProcessingParameterString("class_field", "Class field", optional=True),
        QgsProcessingParameterEnum(
            "unlabelled", "Pixels under no label", options=["Background", "Ignore"], defaultValue=0
        ),
        QgsProcessingParameterFile(
            "model", "Model file (ONNX or TorchScript)", fileFilter="Models (*.onnx *.pt *.ts);;All files (*)"
        ),
    ]
    for row, definition in enumerate(parameters):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(_position(0, row))
        model.addModelParameter(definition, component)

    def from_input(name: str) -> list:
        return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]

    def from_child(child: str, output: str) -> list:
        return [QgsProcessingModelChildParameterSource.fromChildOutput(child, output)]

    def output(child_id: str, child_output: str, name: str, description: str, row: int) -> object:
        # The model's parameter is "<child id>:<name>", e.g. segment:classes.
        result = QgsProcessingModelOutput(name, description)
        result.setChildId(child_id)
        result.setChildOutputName(child_output)
        result.setPosition(_position(4, row))
        result.setDefaultValue(QgsProcessing.TEMPORARY_OUTPUT)
        return result

    steps = [
        (
            "segment",
            "rsdl:segment",
            "Segment the image",
            {"INPUT": from_input("image"), "MODEL": from_input("model")},
            {"classes": output("segment", "OUTPUT", "classes", "Classes", 0)},
        ),
        (
            "rasterize",
            "rsdl:rasterizelabels",
            "Rasterize the labels onto the class raster's grid",
            {
                "INPUT": from_input("labels"),
                "FIELD": from_input("class_field"),
                "UNLABELLED": from_input("unlabelled"),
                "REFERENCE": from_child("segment", "OUTPUT"),
            },
            {"label_mask": output("rasterize", "OUTPUT", "label_mask", "Label mask", 1)},
        ),
        (
            "evaluate",
            "rsdl:evaluate",
            "Evaluate the classes against the labels",
            {"PREDICTION": from_child("segment", "OUTPUT"), "REFERENCE": from_child("rasterize", "OUTPUT")},
            {
                "report": output("evaluate", "OUTPUT_HTML", "report", "Evaluation report (HTML)", 2),
                "metrics": output("evaluate", "OUTPUT_CSV", "metrics", "Per-class metrics (CSV)", 3),
            },
        ),
    ]
    for column, (child_id, algorithm, description, sources, outputs) in enumerate(steps, start=1):
        child = QgsProcessingModelChildAlgorithm(algorithm)
        child.setChildId(child_id)
        child.setDescription(description)
        child.setPosition(_position(column, column - 1))
        for definition in child.algorithm().parameterDefinitions():
            # The rest at their defaults, spelt out as the Modeler dialog does (it needs a value
            # for every mandatory parameter).
            default = definition.defaultValue()
            if definition.name() not in sources and not definition.isDestination() and default is not None:
                sources[definition.name()] = [QgsProcessingModelChildParameterSource.fromStaticValue(default)]
        for name, source in sources.items():  # setParameterSources() crashes QGIS 3.22's bindings
            child.addParameterSources(name, source)
        child.setModelOutputs(outputs)
        model.addChildAlgorithm(child)
    model.setHelpContent({"ALG_DESC": DESCRIPTION, "ALG_CREATOR": "rsdl", **HELP})
    problems = model_problems(model)
    if problems:
        raise RuntimeError("The model is not valid: " + "; ".join(problems))
    return model


def model_problems(model) -> list[str]:
    """What QGIS's Modeler reports as wrong with the model's steps (empty: valid)."""
    return [
        problem
        for child_id in model.childAlgorithms()
        for problem in model.validateChildAlgorithm(child_id)[1]
    ]


def model_summary(path: Path) -> dict:
    """The .model3 file at ``path`` as this QGIS loads it, whatever QGIS version wrote it.

    ``model`` is QGIS's own description of the model (``toVariant``: inputs, steps with their
    parameter sources, outputs, help) with the two things that depend on the writer taken out:
    QGIS 3.22 names a model output "<step>:<output>" (segment:classes), QGIS 3.26 and later name
    the outputs of models built there after their descriptions (classes) and mark that with
    ``internal_version`` (qgis/QGIS#47559). Outputs are keyed here by step and output in both.
    ``problems`` is what the Modeler reports wrong with the steps.
    """
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    if not model.fromFile(str(path)):
        raise RuntimeError(f"QGIS could not load the model '{path}'.")
    content = model.toVariant()
    content.pop("internal_version", None)
    definitions = {}
    for name, definition in content.pop("parameterDefinitions").items():
        metadata = definition.get("metadata") or {}
        if "_modelChildId" in metadata:  # an output of a step
            name = f"{metadata['_modelChildId']}:{metadata['_modelChildOutputName']}"
            definition = {key: value for key, value in definition.items() if key != "name"}
        definitions[name] = definition
    content["parameterDefinitions"] = definitions
    return {"model": content, "problems": model_problems(model)}


def write_model(path: Path) -> Path:
    """Build the model and write it as a .model3 file (QGIS's own XML writer)."""
    model = build_model()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    if not model.toFile(str(temporary)):
        raise RuntimeError(f"QGIS could not write '{temporary}'.")
    os.replace(temporary, path)
    return path


def _plain(value: object) -> object:
    """JSON for what ``toVariant`` leaves wrapped: a QVariant (null, or holding a value)."""
    from qgis.PyQt.QtCore import QVariant

    if isinstance(value, QVariant):
        return None if value.isNull() else value.value()
    raise TypeError(f"{type(value).__name__} in a model is not JSON serializable")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", type=Path, nargs="?", default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--summary",
        type=Path,
        nargs="+",
        metavar="MODEL3",
        help="print how this QGIS loads these .model3 files (JSON, by file) instead of writing one",
    )
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # Qt orders XML attributes by a seeded hash: a fixed seed writes the same file every time.
    os.environ.setdefault("QT_HASH_SEED", "0")
    from qgis.core import QgsApplication

    from rsdl_qgis_plugin.processing_provider.provider import RsdlProvider

    application = QgsApplication([], False)
    application.initQgis()
    provider = RsdlProvider(load_models=False)  # the models are what is being written
    QgsApplication.processingRegistry().addProvider(provider)
    if args.summary:
        summaries = {str(path): model_summary(path) for path in args.summary}
        print(json.dumps(summaries, indent=1, sort_keys=True, default=_plain))
    else:
        print(f"model: {write_model(args.output)}")
    QgsApplication.processingRegistry().removeProvider(provider)
    application.exitQgis()


if __name__ == "__main__":
    main()
