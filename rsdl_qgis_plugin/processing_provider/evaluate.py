"""rsdl:evaluate: accuracy of a class raster against reference labels (a mask or vector layers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..core.errors import RsdlError
from ..core.files.atomic_output import AtomicOutputs, atomic_file
from ..core.labels.class_matching import reference_class_names
from ..core.metrics.class_scoring import match_for_scoring, score_matched
from ..core.metrics.confusion import ConfusionMatrix, PairCounts
from ..core.reports.confusion_chart import confusion_figure
from ..core.reports.evaluation_report import metrics_csv, metrics_html
from ..core.reports.figures import figure_png, save_png
from ..qgis_io.class_pairs import count_class_pairs
from ..qgis_io.class_raster import class_raster_names, open_class_raster
from ..qgis_io.compat import SOURCE_VECTOR_ANY_GEOMETRY
from ..qgis_io.gdal_calls import raise_if_cancelled
from ..qgis_io.label_source import LabelMask, LabelSource, label_mask
from ..qgis_io.raster_grid import grid_from_raster_layer
from .base_algorithm import RsdlAlgorithm
from .label_parameters import LabelParameters

MATCHING_OPTIONS = ("By name where both rasters name their classes, else by value", "By value")
ONE_REFERENCE = (
    "Give the reference labels either as a label mask (REFERENCE) or as vector layers "
    "(LABELS), exactly one of the two."
)
GRID_HINT = (
    "Rasterize the labels onto the class raster's grid (rsdl:rasterizelabels with it "
    "as REFERENCE), give them as vector LABELS, or warp the mask onto that grid with "
    "nearest-neighbour resampling (Raster > Projections > Warp) first."
)


@dataclass(frozen=True)
class EvaluateSettings:
    """What a run scores against what, and where its reports go ('' for none)."""

    prediction: QgsRasterLayer
    source: LabelSource
    by_value: bool
    html_path: str
    csv_path: str
    png_path: str


class EvaluateAlgorithm(RsdlAlgorithm):
    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate a class raster against reference labels"
    GROUP = "Evaluation"
    GROUP_ID = "evaluation"
    DESCRIPTION = (
        "Compares a class raster (a model's prediction, or any classification) with reference "
        "labels: a label mask on exactly the same grid, or vector layers rasterized onto the "
        "class raster's grid by the rules of 'Rasterize labels to a class mask'. Computes the "
        "confusion matrix, per-class IoU, F1, precision and recall, overall accuracy, mean IoU, "
        "mean F1 and Cohen's kappa. Pixels that are ignore or nodata in the reference, or nodata "
        "in the class raster, are left out. Both rasters are read in blocks of rows, so any size "
        "works. A reference on another grid is refused rather than resampled: resampling would "
        "change the labels being scored. Outputs: an HTML report with the confusion-matrix "
        "heatmap, a per-class CSV table, the heatmap as a PNG, and the main metrics as numbers "
        "(and all of them as JSON) for the Graphical Modeler. Undefined values (the precision of "
        "a class never predicted, the recall of a class absent from the reference) are empty or "
        "null, never 0."
    )

    PREDICTION = "PREDICTION"
    REFERENCE = "REFERENCE"
    LABELS = "LABELS"
    CLASS_MATCHING = "CLASS_MATCHING"
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_CSV = "OUTPUT_CSV"
    CONFUSION_PNG = "CONFUSION_PNG"
    OVERALL_ACCURACY = "OVERALL_ACCURACY"
    KAPPA = "KAPPA"
    MEAN_IOU = "MEAN_IOU"
    MEAN_F1 = "MEAN_F1"
    METRICS = "METRICS"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.PREDICTION, self.tr("Class raster (prediction)")),
            "The classes to score: one band of unsigned whole numbers (e.g. the OUTPUT of "
            "rsdl:segment, or any classifier's output). Its nodata pixels are left out. Class "
            "names are read from its metadata (rsdl's, GDAL category names or a raster attribute "
            "table).",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr("Reference label mask"), optional=True),
            "Reference labels as a one-band mask on exactly the class raster's grid (same size, "
            "geotransform and CRS), e.g. from rsdl:rasterizelabels with the class raster (or the "
            "image it was made from) as REFERENCE. Its ignore value (its nodata, else "
            "IGNORE_VALUE) is left out. Give REFERENCE or LABELS, not both.",
        )
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(
                self.LABELS,
                self.tr("Reference vector labels"),
                SOURCE_VECTOR_ANY_GEOMETRY,
                optional=True,
            ),
            "Reference labels as vector layers, instead of REFERENCE: rasterized onto the class "
            "raster's grid with the class, value, overlap and buffer parameters below (the rules "
            "of 'Rasterize labels to a class mask'). For sparse samples set UNLABELLED to "
            "'Ignore', so that unlabelled area is not scored as background.",
        )
        LabelParameters.declare(self)
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.CLASS_MATCHING,
                self.tr("Match classes"),
                options=list(MATCHING_OPTIONS),
                defaultValue=0,
            ),
            "0: when both rasters name their classes, a reference class counts as the predicted "
            "class of the same name (case ignored), whatever their values (a model's 'water' may "
            "be 2 where the labels' is 3); reference classes the prediction does not know stay "
            "apart. Names that only repeat the value ('3', 'class_3') do not count. With no name "
            "in common, classes are matched by value. 1: by value only.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_HTML,
                self.tr("Evaluation report (HTML)"),
                "HTML files (*.html)",
                optional=True,
                createByDefault=True,
            ),
            "HTML page with the summary metrics, the per-class table and the confusion-matrix "
            "heatmap (embedded, so the page is one file). Opens in the Processing results viewer. "
            "Optional: the metrics are outputs too.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_CSV, self.tr("Per-class metrics (CSV)"), "CSV files (*.csv)", optional=True
            ),
            "Optional CSV table, one row per class: value, name, iou, f1, precision, recall, "
            "support (reference pixels) and predicted (pixels predicted as the class). Undefined "
            "values are empty.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.CONFUSION_PNG,
                self.tr("Confusion-matrix heatmap (PNG)"),
                "PNG files (*.png)",
                optional=True,
                createByDefault=False,
            ),
            "Optional PNG of the confusion matrix (rows reference, columns prediction), coloured "
            "by the share of each reference class. Needs matplotlib.",
        )
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, self.tr("Overall accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.KAPPA, self.tr("Cohen's kappa")))
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_IOU, self.tr("Mean IoU")))
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_F1, self.tr("Mean F1")))
        self.addOutput(QgsProcessingOutputString(self.METRICS, self.tr("All metrics (JSON)")))

    # -- run --------------------------------------------------------------------------------

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        settings = self._read_settings(parameters, context)
        layer = settings.prediction
        grid = grid_from_raster_layer(layer)
        prediction = open_class_raster(layer)
        steps = QgsProcessingMultiStepFeedback(settings.source.step_count, feedback)
        work_parent = QgsProcessingUtils.tempFolder()
        transform = context.transformContext()
        with label_mask(settings.source, layer, grid, None, work_parent, transform, steps, GRID_HINT) as mask:
            counts = count_class_pairs(prediction, mask.dataset, mask.description.values.ignore_value, steps)
        if not counts.counts:
            raise RsdlError(
                f"No pixel to evaluate: all {counts.excluded:,} pixels of '{layer.name()}' "
                "are nodata in it, or ignore/nodata in the reference. Check that the labels cover "
                "the class raster, and the IGNORE_VALUE and UNLABELLED settings."
            )
        matrix, metrics = self._score(settings, counts, mask, class_raster_names(prediction), feedback)
        self._log(metrics, feedback)
        raise_if_cancelled(feedback)

        inputs = [
            ("Class raster (prediction)", layer.source()),
            ("Reference", settings.source.describe()),
            ("Classes matched", metrics["class_matching"]),
            ("Reference ignore value", str(mask.description.values.ignore_value)),
        ]
        html_path, csv_path, png_path = settings.html_path, settings.csv_path, settings.png_path
        self._write_outputs(metrics, matrix, inputs, html_path, csv_path, png_path, feedback)
        return {
            self.OUTPUT_HTML: html_path or None,
            self.OUTPUT_CSV: csv_path or None,
            self.CONFUSION_PNG: png_path or None,
            self.OVERALL_ACCURACY: metrics["overall_accuracy"],
            self.KAPPA: metrics["kappa"],
            self.MEAN_IOU: metrics["mean_iou"],
            self.MEAN_F1: metrics["mean_f1"],
            self.METRICS: json.dumps(metrics),
        }

    def _read_settings(self, parameters: dict[str, Any], context: QgsProcessingContext) -> EvaluateSettings:
        prediction = self.parameterAsRasterLayer(parameters, self.PREDICTION, context)
        if prediction is None or not prediction.isValid():
            raise RsdlError("PREDICTION: choose the class raster to evaluate.")
        source = LabelParameters.read_source(
            self, parameters, context, self.REFERENCE, self.LABELS, ONE_REFERENCE, ONE_REFERENCE
        )
        return EvaluateSettings(
            prediction,
            source,
            by_value=self.parameterAsEnum(parameters, self.CLASS_MATCHING, context) == 1,
            html_path=self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context),
            csv_path=self.parameterAsFileOutput(parameters, self.OUTPUT_CSV, context),
            png_path=self.parameterAsFileOutput(parameters, self.CONFUSION_PNG, context),
        )

    @staticmethod
    def _score(
        settings: EvaluateSettings,
        counts: PairCounts,
        mask: LabelMask,
        prediction_names: dict[int, str],
        feedback: QgsProcessingFeedback,
    ) -> tuple[ConfusionMatrix, dict[str, Any]]:
        """Match the classes (CLASS_MATCHING), say how, and score the matched pairs."""
        reference_names = reference_class_names(mask.description.classes, mask.description.values)
        scoring = match_for_scoring(
            reference_names,
            prediction_names,
            counts.values(),
            settings.by_value,
            reference_unnamed=mask.names_from_layers,
            labels_from_mask=settings.source.mask is not None,
        )
        for message in scoring.infos:
            feedback.pushInfo(message)
        for message in scoring.warnings:
            feedback.pushWarning(message)
        return score_matched(counts, scoring.matching, prediction_names, reference_names)

    @staticmethod
    def _log(metrics: dict[str, Any], feedback: QgsProcessingFeedback) -> None:
        def text(value: float | None) -> str:
            return "undefined" if value is None else f"{value:.4f}"

        feedback.pushInfo(
            f"Pixels evaluated: {metrics['labelled']:,}; left out (ignore or nodata): "
            f"{metrics['excluded']:,}."
        )
        feedback.pushInfo(
            f"Overall accuracy {text(metrics['overall_accuracy'])}, kappa {text(metrics['kappa'])}, "
            f"mean IoU {text(metrics['mean_iou'])}, mean F1 {text(metrics['mean_f1'])}."
        )
        for row in metrics["classes"]:
            feedback.pushInfo(
                f"  {row['value']:>5}  {row['name']:<20} IoU {text(row['iou'])}  F1 {text(row['f1'])}  "
                f"precision {text(row['precision'])}  recall {text(row['recall'])}  "
                f"reference {row['support']:,} px  predicted {row['predicted']:,} px"
            )

    @staticmethod
    def _write_outputs(
        metrics: dict[str, Any],
        matrix: ConfusionMatrix,
        inputs: list[tuple[str, str]],
        html_path: str,
        csv_path: str,
        png_path: str,
        feedback: QgsProcessingFeedback,
    ) -> None:
        """Report, table and heatmap appear together or not at all."""
        figure = None
        if html_path or png_path:
            try:
                figure = confusion_figure(matrix.matrix, metrics["confusion_matrix"]["classes"])
            except RsdlError as error:  # no matplotlib: the report can do without its picture
                if png_path:
                    raise
                feedback.pushWarning(f"The report has no heatmap: {error}")
        with AtomicOutputs() as outputs:
            if png_path:
                save_png(figure, png_path, outputs)
            if csv_path:
                with atomic_file(csv_path, sidecars=(), outputs=outputs) as temp:
                    temp.write_text(metrics_csv(metrics), encoding="utf-8")
            if html_path:
                page = metrics_html(
                    "Evaluation of a class raster",
                    inputs,
                    metrics,
                    figure_png(figure) if figure is not None else None,
                )
                with atomic_file(html_path, sidecars=(), outputs=outputs) as temp:
                    temp.write_text(page, encoding="utf-8")
