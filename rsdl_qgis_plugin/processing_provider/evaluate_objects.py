"""rsdl:evaluateobjects: predicted objects (boxes or polygons) against reference objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingUtils,
    QgsWkbTypes,
)

from ..core.errors import RsdlError
from ..core.files.atomic_output import AtomicOutputs, atomic_file
from ..core.metrics.object_matching import ObjectEvaluation, evaluate_objects
from ..core.reports.figures import figure_png
from ..core.reports.object_report import object_metrics_csv, object_report_html, precision_recall_figure
from ..qgis_io.compat import (
    FAST_INSERT,
    FIELD_DOUBLE,
    FIELD_INT,
    GEOMETRY_POLYGON,
    GEOMETRY_UNKNOWN,
    NUMBER_DOUBLE,
    SKIP_GEOMETRY_VALIDITY_CHECKS,
    SOURCE_VECTOR_POLYGON,
)
from ..qgis_io.gdal_calls import raise_if_cancelled
from ..qgis_io.object_overlap import ObjectLayer, number_classes, overlap_pairs, read_objects
from .base_algorithm import RsdlAlgorithm

DEFAULT_CLASS_FIELD = "class_name"  # what rsdl:detect writes
DEFAULT_SCORE_FIELD = "score"


@dataclass(frozen=True)
class ObjectSettings:
    """What a run compares, how, and where its files go ('' for none)."""

    predictions: QgsProcessingFeatureSource
    reference: QgsProcessingFeatureSource
    prediction_name: str
    reference_name: str
    pred_class_field: str
    ref_class_field: str
    score_field: str
    iou_threshold: float
    report_path: str
    csv_path: str

    @property
    def class_agnostic(self) -> bool:
        return not self.ref_class_field


class EvaluateObjectsAlgorithm(RsdlAlgorithm):
    NAME = "evaluateobjects"
    DISPLAY_NAME = "Evaluate detected objects against reference objects"
    GROUP = "Evaluation"
    GROUP_ID = "evaluation"
    DESCRIPTION = (
        "Compares predicted objects (boxes or polygons, e.g. the OUTPUT of rsdl:detect) with "
        "reference objects (boxes or polygons), in any CRS: the reference is transformed into the "
        "predictions' CRS. Within each class, predictions are taken by descending score and each "
        "matches the unmatched reference object with the highest IoU (intersection area over union "
        "area) at or above IOU_THRESHOLD, by COCO's rules. Outputs: TP, FP and FN counts, "
        "precision, recall and F1 at that threshold; COCO's AP at IoU 0.5 (AP50) and AP@[.5:.95] "
        "(AP), per class and averaged over the classes in the reference (101-point interpolated "
        "precision, as pycocotools computes it, with no limit on the number of objects); an HTML "
        "report with precision-recall curves; the matched, false-positive and missed features as "
        "layers; and the figures as numbers and JSON for the Graphical Modeler. Invalid geometries "
        "are repaired (make valid) and counted in the log; features without a polygon are left out. "
        "Undefined values (the precision of a class never predicted) are null, never 0. A "
        "PREDICTIONS layer without objects (a detector that found nothing) is evaluated, with a "
        "warning: TP 0, FP 0, every reference object missed, precision and F1 null, recall and AP 0. "
        "A REFERENCE without objects is refused."
    )

    PREDICTIONS = "PREDICTIONS"
    REFERENCE = "REFERENCE"
    PRED_CLASS_FIELD = "PRED_CLASS_FIELD"
    REF_CLASS_FIELD = "REF_CLASS_FIELD"
    SCORE_FIELD = "SCORE_FIELD"
    IOU_THRESHOLD = "IOU_THRESHOLD"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    OUTPUT_CSV = "OUTPUT_CSV"
    OUTPUT_MATCHED = "OUTPUT_MATCHED"
    OUTPUT_FALSE_POSITIVES = "OUTPUT_FALSE_POSITIVES"
    OUTPUT_MISSED = "OUTPUT_MISSED"
    TP = "TP"
    FP = "FP"
    FN = "FN"
    PRECISION = "PRECISION"
    RECALL = "RECALL"
    F1 = "F1"
    AP50 = "AP50"
    AP = "AP"
    PER_CLASS = "PER_CLASS"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predicted objects"), [SOURCE_VECTOR_POLYGON]
            ),
            "The objects to score: a polygon layer of boxes or outlines, e.g. the OUTPUT of "
            "rsdl:detect. IoUs are computed in its CRS (planar areas).",
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.REFERENCE, self.tr("Reference objects"), [SOURCE_VECTOR_POLYGON]
            ),
            "The true objects: a polygon layer of boxes or outlines, in any CRS (transformed into "
            "the predictions' CRS).",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.PRED_CLASS_FIELD,
                self.tr("Predicted class field"),
                defaultValue=DEFAULT_CLASS_FIELD,
                parentLayerParameterName=self.PREDICTIONS,
                optional=True,
            ),
            "The predictions' class field (rsdl:detect writes class_name). Used only with "
            "REF_CLASS_FIELD: a prediction can match only reference objects whose class reads the "
            "same (values compared as text, so 1, 1.0 and '1' are one class).",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.REF_CLASS_FIELD,
                self.tr("Reference class field"),
                parentLayerParameterName=self.REFERENCE,
                optional=True,
            ),
            "The reference's class field, holding the same names (or values) as PRED_CLASS_FIELD. "
            "Empty: one class; objects are matched whatever their class.",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.SCORE_FIELD,
                self.tr("Score field"),
                defaultValue=DEFAULT_SCORE_FIELD,
                parentLayerParameterName=self.PREDICTIONS,
                optional=True,
            ),
            "The predictions' confidence field (rsdl:detect writes score); higher is surer. It "
            "orders the predictions for matching and for AP. Empty or missing: every prediction "
            "scores 1 (AP then rates the predictions in layer order). NULL scores count as 0.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.IOU_THRESHOLD,
                self.tr("IoU threshold"),
                NUMBER_DOUBLE,
                defaultValue=0.5,
                minValue=0.01,
                maxValue=1.0,
            ),
            "The least IoU (intersection area / union area) at which a prediction matches a "
            "reference object, for TP, FP, FN, precision, recall, F1, the output layers and the "
            "report's curves. AP50 and AP always use COCO's thresholds (0.5, and 0.5 to 0.95).",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_REPORT,
                self.tr("Evaluation report (HTML)"),
                "HTML files (*.html)",
                optional=True,
                createByDefault=True,
            ),
            "HTML page with the summary, the per-class table and the precision-recall curves "
            "(embedded, so the page is one file). Optional: the figures are outputs too.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_CSV,
                self.tr("Per-class figures (CSV)"),
                "CSV files (*.csv)",
                optional=True,
                createByDefault=False,
            ),
            "Optional CSV table, one row per class (class_id, name, references, predictions, tp, fp, "
            "fn, precision, recall, f1, ap_at_threshold, ap50, ap75, ap) and a last row "
            "'(all classes)' with the totals. Undefined values are empty.",
        )
        sinks = (
            (
                self.OUTPUT_MATCHED,
                "Matched predictions",
                "The predictions that matched a reference object (true positives), with their fields "
                "plus matched_fid (the reference feature's id) and match_iou.",
            ),
            (
                self.OUTPUT_FALSE_POSITIVES,
                "False positives",
                "The predictions that matched nothing, with their fields plus best_iou: their highest "
                "IoU with any reference object of their class (a near miss shows a value just under "
                "IOU_THRESHOLD, or a reference already taken).",
            ),
            (
                self.OUTPUT_MISSED,
                "Missed reference objects",
                "The reference objects that no prediction matched (false negatives), in the "
                "reference's CRS, with their fields plus best_iou with any prediction of their class.",
            ),
        )
        for name, description, help_text in sinks:
            self.add_parameter(
                QgsProcessingParameterFeatureSink(
                    name, self.tr(description), SOURCE_VECTOR_POLYGON, optional=True, createByDefault=True
                ),
                help_text,
            )
        numbers = (
            (self.TP, "True positives"),
            (self.FP, "False positives"),
            (self.FN, "False negatives (missed)"),
            (self.PRECISION, "Precision"),
            (self.RECALL, "Recall"),
            (self.F1, "F1"),
            (self.AP50, "AP at IoU 0.5 (COCO)"),
            (self.AP, "AP@[.5:.95] (COCO)"),
        )
        for name, description in numbers:
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(description)))
        self.addOutput(QgsProcessingOutputString(self.PER_CLASS, self.tr("Per-class figures (JSON)")))

    # -- run --------------------------------------------------------------------------------

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        settings = self._read_settings(parameters, context, feedback)
        steps = QgsProcessingMultiStepFeedback(4, feedback)
        predictions = read_objects(
            settings.predictions,
            "" if settings.class_agnostic else settings.pred_class_field,
            settings.score_field,
            None,
            steps,
        )
        steps.setCurrentStep(1)
        transform = QgsCoordinateTransform(
            settings.reference.sourceCrs(), settings.predictions.sourceCrs(), context.transformContext()
        )
        reference = read_objects(settings.reference, settings.ref_class_field, "", transform, steps)
        self._check_objects(settings, predictions, reference, feedback)
        predicted_ids, reference_ids, names = number_classes(predictions.classes, reference.classes)
        if not settings.class_agnostic and len(predictions):
            self._check_shared_classes(settings, predictions, reference)
        steps.setCurrentStep(2)
        pairs = overlap_pairs(predictions, reference, predicted_ids, reference_ids, steps)
        evaluation = evaluate_objects(
            predictions.scores,
            predicted_ids,
            reference_ids,
            pairs,
            settings.iou_threshold,
            names,
            class_agnostic=settings.class_agnostic,
        )
        self._log(evaluation, feedback)
        raise_if_cancelled(feedback)
        steps.setCurrentStep(3)
        metrics = evaluation.as_dict()
        outputs = self._write_layers(parameters, context, settings, predictions, reference, evaluation, steps)
        self._write_reports(settings, evaluation, metrics, feedback)
        return {
            **outputs,
            self.OUTPUT_REPORT: settings.report_path or None,
            self.OUTPUT_CSV: settings.csv_path or None,
            self.TP: evaluation.tp,
            self.FP: evaluation.fp,
            self.FN: evaluation.fn,
            self.PRECISION: evaluation.precision,
            self.RECALL: evaluation.recall,
            self.F1: evaluation.f1,
            self.AP50: evaluation.ap50,
            self.AP: evaluation.ap,
            self.PER_CLASS: json.dumps(metrics["classes"]),
        }

    def _read_settings(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> ObjectSettings:
        sources = {}
        for name in (self.PREDICTIONS, self.REFERENCE):
            source = self.parameterAsSource(parameters, name, context)
            if source is None:
                raise RsdlError(
                    f"{name}: choose a polygon layer ({self.invalidSourceError(parameters, name)})."
                )
            self._require_polygons(source, name)
            sources[name] = source
        layer_names = {name: source.sourceName() for name, source in sources.items()}
        pred_class = self.parameterAsString(parameters, self.PRED_CLASS_FIELD, context).strip()
        ref_class = self.parameterAsString(parameters, self.REF_CLASS_FIELD, context).strip()
        score = self.parameterAsString(parameters, self.SCORE_FIELD, context).strip()
        predictions, reference = sources[self.PREDICTIONS], sources[self.REFERENCE]
        if ref_class:
            self._require_field(reference, ref_class, self.REF_CLASS_FIELD, self.REFERENCE, layer_names)
            if not pred_class:
                raise RsdlError(
                    "PRED_CLASS_FIELD is empty while REF_CLASS_FIELD is set: give the predictions' class "
                    "field (rsdl:detect writes class_name), or leave REF_CLASS_FIELD empty to match "
                    "objects whatever their class."
                )
            self._require_field(predictions, pred_class, self.PRED_CLASS_FIELD, self.PREDICTIONS, layer_names)
        else:
            feedback.pushInfo(
                "REF_CLASS_FIELD is empty: objects are matched whatever their class (one class)."
            )
        if score and predictions.fields().lookupField(score) < 0:
            feedback.pushWarning(
                f"SCORE_FIELD '{score}' is not a field of PREDICTIONS ('{layer_names[self.PREDICTIONS]}'): "
                "every prediction scores 1, so AP rates them in layer order."
            )
            score = ""
        return ObjectSettings(
            predictions,
            reference,
            layer_names[self.PREDICTIONS],
            layer_names[self.REFERENCE],
            pred_class,
            ref_class,
            score,
            self.parameterAsDouble(parameters, self.IOU_THRESHOLD, context),
            self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context),
            self.parameterAsFileOutput(parameters, self.OUTPUT_CSV, context),
        )

    @staticmethod
    def _require_polygons(source: QgsProcessingFeatureSource, parameter: str) -> None:
        """Refuse a point, line or table layer: an object has an area (processing.run and the Modeler
        pass any layer). A layer of mixed geometry types is read for its polygons."""
        kind = QgsWkbTypes.geometryType(source.wkbType())
        if kind in (GEOMETRY_POLYGON, GEOMETRY_UNKNOWN):
            return
        centres = (
            " For rsdl:detect's output, run it with OUTPUT_GEOMETRY boxes or instance polygons, not "
            "centre points."
            if parameter == "PREDICTIONS"
            else ""
        )
        raise RsdlError(
            f"{parameter}: '{source.sourceName()}' is a {QgsWkbTypes.displayString(source.wkbType())} "
            "layer; rsdl:evaluateobjects compares objects by their overlapping area, so it needs a "
            f"polygon layer (boxes or outlines).{centres}"
        )

    @staticmethod
    def _require_field(
        source: QgsProcessingFeatureSource, field: str, parameter: str, layer: str, names: dict[str, str]
    ) -> None:
        if source.fields().lookupField(field) >= 0:
            return
        listed = ", ".join(f"'{name}'" for name in source.fields().names()) or "none"
        raise RsdlError(
            f"{parameter}: '{field}' is not a field of {layer} ('{names[layer]}'); its fields are {listed}. "
            "Choose one of them, or leave REF_CLASS_FIELD empty to match objects whatever their class."
        )

    @staticmethod
    def _check_objects(
        settings: ObjectSettings,
        predictions: ObjectLayer,
        reference: ObjectLayer,
        feedback: QgsProcessingFeedback,
    ) -> None:
        """Refuse a reference without objects, or sides apart from each other; warn of predictions
        without objects; log what was repaired or left out."""
        for parameter, name, objects in (
            ("PREDICTIONS", settings.prediction_name, predictions),
            ("REFERENCE", settings.reference_name, reference),
        ):
            if objects.repaired:
                feedback.pushWarning(
                    f"{parameter}: {objects.repaired} invalid geometries of '{name}' were repaired (make "
                    "valid) before computing overlaps; the output layers keep the original geometries."
                )
            if objects.skipped:
                feedback.pushWarning(
                    f"{parameter}: {objects.skipped} features of '{name}' have no polygon with an area (no "
                    "geometry, empty, or not transformable) and are left out."
                )
        if not len(reference):
            raise RsdlError(
                f"REFERENCE: '{settings.reference_name}' has no object to evaluate against "
                f"({reference.skipped} features without a polygon with an area). Choose a layer of "
                "reference polygons (boxes or outlines) that holds objects."
            )
        if not len(predictions):
            # A detector that finds nothing is a result (every reference object missed), not an
            # error: a Modeler chain detect -> evaluateobjects must run through.
            feedback.pushWarning(
                f"PREDICTIONS: '{settings.prediction_name}' has no object ({predictions.skipped} features "
                "without a polygon with an area): every reference object is missed, precision is "
                "undefined and AP is 0. If it came from rsdl:detect, its CONFIDENCE_THRESHOLD may be too "
                "high, or the model sees no objects in that raster."
            )
            return
        if predictions.null_scores:
            feedback.pushWarning(
                f"PREDICTIONS: {predictions.null_scores} predictions have a NULL {settings.score_field}; "
                "they score 0."
            )
        predicted_extent, reference_extent = predictions.extent(), reference.extent()
        if not predicted_extent.intersects(reference_extent):
            crs = settings.predictions.sourceCrs().authid() or "its CRS"
            raise RsdlError(
                f"PREDICTIONS and REFERENCE do not overlap: the predictions cover "
                f"{predicted_extent.toString(2)}, the reference {reference_extent.toString(2)} (both in "
                f"{crs}). Check that both layers have the right CRS set (Layer Properties > Source) and "
                "that they show the same area."
            )

    @staticmethod
    def _check_shared_classes(
        settings: ObjectSettings, predictions: ObjectLayer, reference: ObjectLayer
    ) -> None:
        predicted, referenced = set(predictions.classes), set(reference.classes)
        if predicted & referenced:
            return

        def listed(names: set[str]) -> str:
            shown = sorted(names)[:10]
            return ", ".join(f"'{name}'" for name in shown) + (" ..." if len(names) > 10 else "")

        raise RsdlError(
            "No predicted class reads like a reference class: PRED_CLASS_FIELD "
            f"'{settings.pred_class_field}' holds {listed(predicted)}, REF_CLASS_FIELD "
            f"'{settings.ref_class_field}' holds "
            f"{listed(referenced)}. Every prediction would be a false positive. Choose class fields "
            "that hold the same names (or values), or leave REF_CLASS_FIELD empty to match objects "
            "whatever their class."
        )

    @staticmethod
    def _log(evaluation: ObjectEvaluation, feedback: QgsProcessingFeedback) -> None:
        def text(value: float | None) -> str:
            return "undefined" if value is None else f"{value:.4f}"

        feedback.pushInfo(
            f"At IoU >= {evaluation.iou_threshold:g}: TP {evaluation.tp:,}, FP {evaluation.fp:,}, FN "
            f"{evaluation.fn:,}; precision {text(evaluation.precision)}, recall {text(evaluation.recall)}, "
            f"F1 {text(evaluation.f1)}."
        )
        feedback.pushInfo(
            f"COCO AP50 {text(evaluation.ap50)}, AP75 {text(evaluation.ap75)}, "
            f"AP@[.5:.95] {text(evaluation.ap)} "
            "(101-point interpolation, area range all, no limit on the number of objects; means over "
            "the classes in the reference)."
        )
        for row in evaluation.classes:
            feedback.pushInfo(
                f"  {row.name:<20} reference {row.references:,}  predicted {row.predictions:,}  "
                f"TP {row.tp:,}  FP {row.fp:,}  FN {row.fn:,}  precision {text(row.precision)}  "
                f"recall {text(row.recall)}  "
                f"AP50 {text(row.ap50)}  AP {text(row.ap)}"
            )

    def _write_layers(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        settings: ObjectSettings,
        predictions: ObjectLayer,
        reference: ObjectLayer,
        evaluation: ObjectEvaluation,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """The matched, false-positive and missed features, each with its original geometry and
        fields; returns the destinations (None where not asked for)."""
        matches = evaluation.matches
        matched_fids = np.array(reference.feature_ids, dtype=np.int64)
        by_prediction = {fid: index for index, fid in enumerate(predictions.feature_ids)}
        by_reference = {fid: index for index, fid in enumerate(reference.feature_ids)}

        def matched_values(index: int) -> list[Any]:
            return [int(matched_fids[matches.prediction_match[index]]), float(matches.prediction_iou[index])]

        plans = (
            (
                self.OUTPUT_MATCHED,
                settings.predictions,
                by_prediction,
                [("matched_fid", FIELD_INT), ("match_iou", FIELD_DOUBLE)],
                lambda index: matches.prediction_match[index] >= 0,
                matched_values,
            ),
            (
                self.OUTPUT_FALSE_POSITIVES,
                settings.predictions,
                by_prediction,
                [("best_iou", FIELD_DOUBLE)],
                lambda index: matches.prediction_match[index] < 0,
                lambda index: [float(matches.prediction_best_iou[index])],
            ),
            (
                self.OUTPUT_MISSED,
                settings.reference,
                by_reference,
                [("best_iou", FIELD_DOUBLE)],
                lambda index: matches.reference_match[index] < 0,
                lambda index: [float(matches.reference_best_iou[index])],
            ),
        )
        results: dict[str, Any] = {}
        for number, (parameter, source, indices, extra, chosen, values) in enumerate(plans):
            added = QgsFields()
            for field_name, field_type in extra:
                added.append(QgsField(field_name, field_type))
            fields = QgsProcessingUtils.combineFields(source.fields(), added)
            sink, destination = self.parameterAsSink(
                parameters, parameter, context, fields, source.wkbType(), source.sourceCrs()
            )
            if sink is None:
                results[parameter] = None
                continue
            written = self._copy_features(sink, fields, source, indices, chosen, values, feedback)
            del sink  # closes (commits) the file, so that it can be checked
            self.check_written_layer(destination, written, parameter)
            results[parameter] = destination
            feedback.setProgress(100.0 * (number + 1) / len(plans))
        return results

    @staticmethod
    def _copy_features(
        sink: QgsFeatureSink,
        fields: QgsFields,
        source: QgsProcessingFeatureSource,
        indices: dict[int, int],
        chosen: Any,
        values: Any,
        feedback: QgsProcessingFeedback,
    ) -> int:
        written = 0
        # Invalid geometries too: they were repaired for the overlaps, and are written as they are.
        for feature in source.getFeatures(QgsFeatureRequest(), SKIP_GEOMETRY_VALIDITY_CHECKS):
            raise_if_cancelled(feedback)
            index = indices.get(feature.id())
            if index is None or not chosen(index):
                continue
            output = QgsFeature(fields)
            output.setGeometry(feature.geometry())
            output.setAttributes(feature.attributes() + values(index))
            if not sink.addFeature(output, FAST_INSERT):
                raise RsdlError(f"A feature could not be written: {sink.lastError()}")
            written += 1
        return written

    @staticmethod
    def _write_reports(
        settings: ObjectSettings,
        evaluation: ObjectEvaluation,
        metrics: dict[str, Any],
        feedback: QgsProcessingFeedback,
    ) -> None:
        """Report and table appear together or not at all."""
        if not (settings.report_path or settings.csv_path):
            return
        chart = None
        if settings.report_path:
            try:
                chart = figure_png(precision_recall_figure(evaluation.classes, evaluation.iou_threshold))
            except RsdlError as error:  # no matplotlib: the report can do without its chart
                feedback.pushWarning(f"The report has no precision-recall chart: {error}")
        inputs = [
            ("Predicted objects", settings.prediction_name),
            ("Reference objects", settings.reference_name),
            ("Classes", f"'{settings.pred_class_field}' vs '{settings.ref_class_field}'")
            if not settings.class_agnostic
            else ("Classes", "one class (REF_CLASS_FIELD empty)"),
            ("Score field", settings.score_field or "none (every prediction scores 1)"),
            ("IoU threshold", f"{settings.iou_threshold:g}"),
        ]
        with AtomicOutputs() as outputs:
            if settings.csv_path:
                with atomic_file(settings.csv_path, sidecars=(), outputs=outputs) as temp:
                    temp.write_text(object_metrics_csv(metrics), encoding="utf-8")
            if settings.report_path:
                page = object_report_html("Evaluation of detected objects", inputs, metrics, chart)
                with atomic_file(settings.report_path, sidecars=(), outputs=outputs) as temp:
                    temp.write_text(page, encoding="utf-8")
