"""Write the Graphical Modeler models the plugin ships, with the QGIS API (never by hand).

    python scripts/build_modeler_model.py [MODEL ...] [--output-dir DIR]   (default: every model)
    python scripts/build_modeler_model.py --summary MODEL.model3 [...]   (JSON, see model_summary)

Each model has one builder function in ``MODELS``; the file is ``<DIR>/<MODEL>.model3`` (by
default ``rsdl_qgis_plugin/models``, which the provider loads every ``.model3`` of):

* "Segment and evaluate against labels" (``rsdl:rasterize_segment_evaluate``) chains
  rsdl:segment -> rsdl:rasterizelabels -> rsdl:evaluate: the image is segmented, the label layers
  are rasterized onto the class raster's grid (so the chain holds when segment resamples to the
  model's resolution) and the class raster is scored against that mask.
* "Detect objects and evaluate them" (``rsdl:detect_evaluate``) chains rsdl:detect ->
  rsdl:evaluateobjects: the objects found in the image are matched to reference polygons.

tests/e2e/test_modeler.py checks that running this script reproduces the committed files (on QGIS
3.22, which wrote them; newer QGIS writes models in another form, so there the two files are
compared as that QGIS loads them, with ``--summary``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODELS_FOLDER = REPO / "rsdl_qgis_plugin" / "models"
GROUP, GROUP_ID = "Workflows", "workflows"

SEGMENT_DESCRIPTION = (
    "Segments an image with a model, rasterizes vector labels onto the class raster's grid by "
    "the rules of 'Rasterize labels to a class mask', and scores the classes against them with "
    "'Evaluate a class raster against reference labels'. Classes are matched by name (a text "
    "class field works whatever values the model uses). Outputs: the styled class raster, the "
    "label mask and the evaluation report (HTML) and per-class table (CSV)."
)
SEGMENT_HELP = {
    "image": "The image to segment (any raster layer rsdl:segment reads).",
    "labels": "Vector layers of reference labels (polygons, lines or points), in any CRS.",
    "class_field": "Field holding each label's class: text class names (matched to the model's "
    "class names) or whole numbers. Empty: one class per layer.",
    "unlabelled": "0: unlabelled area is background (complete labels). 1: ignore (sparse samples): "
    "only labelled pixels are scored.",
    "model": "The segmentation model (ONNX, or TorchScript with the rsdl spec).",
}
DETECT_DESCRIPTION = (
    "Detect objects and evaluate them: runs an object detector (or instance segmentation model) "
    "over an image with 'Detect objects with a model' and matches the objects it finds to reference "
    "polygons with 'Evaluate detected objects against reference objects' (COCO's greedy matching "
    "by score at the IoU threshold; AP50 and AP@[.5:.95]). With a reference class field, a detected "
    "object matches only reference objects of the class of the same name. A detector that finds "
    "nothing misses every reference object (the log says so). Outputs: the styled detected "
    "objects, the evaluation report (HTML) and the figures (CSV, one row per class and the totals)."
)
DETECT_HELP = {
    "image": "The image to find objects in (any raster layer rsdl:detect reads).",
    "model": "The object detection or instance segmentation model (ONNX, or TorchScript with the "
    "rsdl spec; YOLO exports run as they are).",
    "reference": "The true objects: polygons (boxes or outlines), in any CRS.",
    "reference_class_field": "The reference's class field, holding the model's class names. "
    "Empty: objects match whatever their class.",
    "confidence_threshold": "Objects scoring below this are dropped. Empty: the model's metadata "
    "(det_conf), else 0.25.",
    "iou_threshold": "The least IoU (intersection area / union area) at which a detected object "
    "matches a reference object, for TP, FP, FN, precision, recall and F1 (AP50 and AP use COCO's "
    "thresholds).",
}

Source = list  # the QgsProcessingModelChildParameterSource values of one child parameter


def _position(column: int, row: int) -> object:
    from qgis.PyQt.QtCore import QPointF

    return QPointF(120.0 + 260.0 * column, 80.0 + 110.0 * row)


def from_input(name: str) -> Source:
    """A child parameter fed by the model's input ``name``."""
    from qgis.core import QgsProcessingModelChildParameterSource

    return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]


def from_child(child: str, output: str) -> Source:
    """A child parameter fed by the output ``output`` of the step ``child``."""
    from qgis.core import QgsProcessingModelChildParameterSource

    return [QgsProcessingModelChildParameterSource.fromChildOutput(child, output)]


def static(value: object) -> Source:
    """A child parameter with a fixed value."""
    from qgis.core import QgsProcessingModelChildParameterSource

    return [QgsProcessingModelChildParameterSource.fromStaticValue(value)]


def model_output(child_id: str, child_output: str, name: str, description: str, row: int) -> object:
    """A model output; QGIS 3.22 names the model's parameter "<child id>:<name>" (segment:classes)."""
    from qgis.core import QgsProcessing, QgsProcessingModelOutput

    result = QgsProcessingModelOutput(name, description)
    result.setChildId(child_id)
    result.setChildOutputName(child_output)
    result.setPosition(_position(4, row))
    result.setDefaultValue(QgsProcessing.TEMPORARY_OUTPUT)
    return result


class Step(NamedTuple):
    """One step of a model: its id, the algorithm it runs, its description in the Modeler, where its
    parameters come from (the others keep their defaults) and which of its outputs are the model's
    (by model output name)."""

    child_id: str
    algorithm: str
    description: str
    sources: dict[str, Source]
    outputs: dict[str, object]


def assemble(
    name: str, inputs: list, steps: list[Step], description: str, help_texts: dict[str, str]
) -> object:
    """A ``QgsProcessingModelAlgorithm`` of the inputs (parameter definitions, in column 0) and the
    steps (one column each, in order), checked as QGIS's Modeler checks it; the rsdl provider must
    be registered."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelParameter,
    )

    model = QgsProcessingModelAlgorithm(name, GROUP, GROUP_ID)
    for row, definition in enumerate(inputs):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(_position(0, row))
        model.addModelParameter(definition, component)
    for column, (child_id, algorithm, child_description, sources, outputs) in enumerate(steps, start=1):
        child = QgsProcessingModelChildAlgorithm(algorithm)
        child.setChildId(child_id)
        child.setDescription(child_description)
        child.setPosition(_position(column, column - 1))
        for definition in child.algorithm().parameterDefinitions():
            # The rest at their defaults, spelt out as the Modeler dialog does (it needs a value
            # for every mandatory parameter).
            default = definition.defaultValue()
            if definition.name() not in sources and not definition.isDestination() and default is not None:
                sources[definition.name()] = static(default)
        for parameter, source in sources.items():  # setParameterSources() crashes QGIS 3.22's bindings
            child.addParameterSources(parameter, source)
        child.setModelOutputs(outputs)
        model.addChildAlgorithm(child)
    model.setHelpContent({"ALG_DESC": description, "ALG_CREATOR": "rsdl", **help_texts})
    problems = model_problems(model)
    if problems:
        raise RuntimeError(f"The model {name} is not valid: " + "; ".join(problems))
    return model


def build_rasterize_segment_evaluate() -> object:
    """Segment and evaluate against labels: segment -> rasterizelabels -> evaluate."""
    from qgis.core import (
        QgsProcessingParameterEnum,
        QgsProcessingParameterFile,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterString,
    )

    from rsdl_qgis_plugin.qgis_io.compat import SOURCE_VECTOR_ANY_GEOMETRY

    inputs = [
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
    steps = [
        Step(
            "segment",
            "rsdl:segment",
            "Segment the image",
            {"INPUT": from_input("image"), "MODEL": from_input("model")},
            {"classes": model_output("segment", "OUTPUT", "classes", "Classes", 0)},
        ),
        Step(
            "rasterize",
            "rsdl:rasterizelabels",
            "Rasterize the labels onto the class raster's grid",
            {
                "INPUT": from_input("labels"),
                "FIELD": from_input("class_field"),
                "UNLABELLED": from_input("unlabelled"),
                "REFERENCE": from_child("segment", "OUTPUT"),
            },
            {"label_mask": model_output("rasterize", "OUTPUT", "label_mask", "Label mask", 1)},
        ),
        Step(
            "evaluate",
            "rsdl:evaluate",
            "Evaluate the classes against the labels",
            {"PREDICTION": from_child("segment", "OUTPUT"), "REFERENCE": from_child("rasterize", "OUTPUT")},
            {
                "report": model_output("evaluate", "OUTPUT_HTML", "report", "Evaluation report (HTML)", 2),
                "metrics": model_output("evaluate", "OUTPUT_CSV", "metrics", "Per-class metrics (CSV)", 3),
            },
        ),
    ]
    return assemble("rasterize_segment_evaluate", inputs, steps, SEGMENT_DESCRIPTION, SEGMENT_HELP)


def build_detect_evaluate() -> object:
    """Detect objects and evaluate them: detect -> evaluateobjects."""
    from qgis.core import (
        QgsProcessingParameterField,
        QgsProcessingParameterFile,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterVectorLayer,
    )

    from rsdl_qgis_plugin.qgis_io.compat import NUMBER_DOUBLE, SOURCE_VECTOR_POLYGON

    inputs = [
        QgsProcessingParameterRasterLayer("image", "Image raster"),
        QgsProcessingParameterFile(
            "model",
            "Detection model file (ONNX or TorchScript)",
            fileFilter="Models (*.onnx *.pt *.ts);;All files (*)",
        ),
        QgsProcessingParameterVectorLayer("reference", "Reference objects", [SOURCE_VECTOR_POLYGON]),
        QgsProcessingParameterField(
            "reference_class_field",
            "Reference class field",
            parentLayerParameterName="reference",
            optional=True,
        ),
        QgsProcessingParameterNumber(
            "confidence_threshold",
            "Confidence threshold",
            NUMBER_DOUBLE,
            optional=True,
            minValue=0.0,
            maxValue=1.0,
        ),
        QgsProcessingParameterNumber(
            "iou_threshold",
            "IoU threshold for matching",
            NUMBER_DOUBLE,
            defaultValue=0.5,
            minValue=0.01,
            maxValue=1.0,
        ),
    ]
    steps = [
        Step(
            "detect",
            "rsdl:detect",
            "Detect the objects",
            {
                "INPUT": from_input("image"),
                "MODEL": from_input("model"),
                "CONFIDENCE_THRESHOLD": from_input("confidence_threshold"),
            },
            {"objects": model_output("detect", "OUTPUT", "objects", "Detected objects", 0)},
        ),
        Step(
            "evaluate",
            "rsdl:evaluateobjects",
            "Evaluate the objects against the reference",
            {
                "PREDICTIONS": from_child("detect", "OUTPUT"),
                "REFERENCE": from_input("reference"),
                "REF_CLASS_FIELD": from_input("reference_class_field"),
                "IOU_THRESHOLD": from_input("iou_threshold"),
            },
            {
                "report": model_output("evaluate", "OUTPUT_REPORT", "report", "Evaluation report (HTML)", 1),
                "figures": model_output("evaluate", "OUTPUT_CSV", "figures", "Per-class figures (CSV)", 2),
            },
        ),
    ]
    return assemble("detect_evaluate", inputs, steps, DETECT_DESCRIPTION, DETECT_HELP)


# Model name (its id is rsdl:<name>, its file <name>.model3) -> its builder.
MODELS: dict[str, Callable[[], object]] = {
    "rasterize_segment_evaluate": build_rasterize_segment_evaluate,
    "detect_evaluate": build_detect_evaluate,
}


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


def write_model(name: str, folder: Path = MODELS_FOLDER) -> Path:
    """Build the model ``name`` and write it as ``<folder>/<name>.model3`` (QGIS's own XML writer)."""
    model = MODELS[name]()
    path = folder / f"{name}.model3"
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
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"{', '.join(MODELS)} (default: all)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=MODELS_FOLDER,
        help="where the .model3 files go (default: %(default)s)",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        nargs="+",
        metavar="MODEL3",
        help="print how this QGIS loads these .model3 files (JSON, by file) instead of writing one",
    )
    args = parser.parse_args()
    unknown = [name for name in args.models if name not in MODELS]
    if unknown:
        parser.error(f"no model {', '.join(unknown)}: choose from {', '.join(MODELS)}")
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
        for name in args.models or MODELS:
            print(f"model: {write_model(name, args.output_dir)}")
    QgsApplication.processingRegistry().removeProvider(provider)
    application.exitQgis()


if __name__ == "__main__":
    main()
