"""rsdl:detect: run an object detector or instance segmentation model over a raster layer, tiled,
with objects merged across tile seams."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..core.contract.model_spec import ModelSpec, ModelType
from ..core.errors import CancelledError, RsdlError
from ..core.labels.label_rules import LabelClass, default_class_color
from ..inference.backends import ModelBackend
from ..inference.detector import ObjectDecoder, detection_thresholds
from ..inference.tiled_detection import DetectionSettings, TiledDetection, run_warnings
from ..qgis_io.area_mask import write_area_mask
from ..qgis_io.compat import NUMBER_DOUBLE, SOURCE_VECTOR_ANY_GEOMETRY, WKB_MULTIPOLYGON, WKB_POINT
from ..qgis_io.object_writer import ObjectFileWriter, ObjectGeometry, copy_objects, object_fields
from .layer_styling import ClassVectorStyler
from .model_algorithm import ModelAlgorithm
from .segment import SegmentAlgorithm
from .tiling_parameters import TilingChoice, TilingParameters

GEOMETRIES = tuple(ObjectGeometry)
DETECT_SHARE = 90.0  # percent of the progress bar for detecting; the rest is writing the output
ORTHOGONALIZE = "native:orthogonalize"


class DetectAlgorithm(ModelAlgorithm):
    NAME = "detect"
    DISPLAY_NAME = "Detect objects with a model"
    DESCRIPTION = (
        "Runs an ONNX or TorchScript object detector (boxes or oriented boxes) or instance "
        "segmentation model over a raster layer, tile by tile, and writes one feature per object. "
        "Objects cut by a tile edge are detected again whole in the neighbouring tile (tiles "
        "overlap): the pieces are dropped, and objects seen by several tiles are kept once "
        "(non-maximum suppression in map coordinates). Objects are written as soon as no later "
        "tile can overlap them, so memory does not grow with the raster's size. Reads YOLOv5/v7, "
        "YOLOv8/v11 detect, -seg and -obb ONNX exports (Ultralytics' layouts; Deepness's det_type, "
        "det_conf and det_iou_thresh keys) and rsdl's own exports. Output: class_id, class_name, "
        "score, area (and angle for oriented boxes), styled in the model's class colours; counts "
        "per class in the log and the COUNTS output."
    )

    INPUT = "INPUT"
    TILING = TilingParameters(overlap=True, area=True)
    CONFIDENCE_THRESHOLD = "CONFIDENCE_THRESHOLD"
    IOU_THRESHOLD = "IOU_THRESHOLD"
    CLASS_AGNOSTIC_NMS = "CLASS_AGNOSTIC_NMS"
    OUTPUT_GEOMETRY = "OUTPUT_GEOMETRY"
    MIN_AREA = SegmentAlgorithm.MIN_AREA
    SIMPLIFY = SegmentAlgorithm.SIMPLIFY
    REGULARIZE = "REGULARIZE"
    OUTPUT = "OUTPUT"
    OBJECTS = "OBJECTS"
    COUNTS = "COUNTS"
    TILES = "TILES"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster layer")),
            "The raster to find objects in: a file, a VRT, or a WMS/XYZ layer (read through QGIS at "
            "the model's resolution).",
        )
        self.add_model_parameters(
            self.INPUT,
            "An object detection (model_type Detector) or instance segmentation (InstanceSegmentor) "
            "model: ONNX, or TorchScript with the rsdl spec. YOLO exports and Deepness detectors run "
            "as they are.",
        )
        self.TILING.declare(self, ModelType.DETECTOR)
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CONFIDENCE_THRESHOLD,
                self.tr("Confidence threshold"),
                NUMBER_DOUBLE,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            ),
            "Objects scoring below this are dropped. Empty: the model's metadata (det_conf), else "
            "0.25 (Ultralytics' default).",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.IOU_THRESHOLD,
                self.tr("Overlap (IoU) threshold of non-maximum suppression"),
                NUMBER_DOUBLE,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            ),
            "Of two objects overlapping by more than this (intersection over union), within a tile "
            "and across tiles, only the higher-scoring one is kept. Empty: the model's metadata "
            "(det_iou_thresh), else 0.45 (Ultralytics' default).",
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.CLASS_AGNOSTIC_NMS, self.tr("Suppress overlaps across classes"), defaultValue=False
            ),
            "Off: only objects of the same class suppress each other. On: an object also suppresses "
            "overlapping objects of other classes (one object, one class).",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.OUTPUT_GEOMETRY,
                self.tr("Output geometry"),
                options=[geometry.value for geometry in GEOMETRIES],
                defaultValue=0,
            ),
            "boxes: each object's box (oriented boxes as rotated rectangles); instance polygons: "
            "the object's mask outline (instance segmentation models only); centre points: the "
            "box centre.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_AREA, self.tr("Minimum object area"), NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0
            ),
            "Objects smaller than this (box or mask area, in square map units of the raster's CRS) "
            "are dropped.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SIMPLIFY,
                self.tr("Polygon simplification tolerance"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
            ),
            "Instance polygons only: Douglas-Peucker tolerance (map units) that smooths the pixel "
            "staircase; 0 keeps it.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.REGULARIZE, self.tr("Right-angle footprints (orthogonalize)"), defaultValue=False
            ),
            "Instance polygons only: square off each outline with QGIS's native:orthogonalize "
            "(angles within 15 degrees of a right angle), as for building footprints.",
            advanced=True,
        )
        self.add_run_parameters(ModelType.DETECTOR, "Tiles")
        self.add_parameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Objects"), SOURCE_VECTOR_ANY_GEOMETRY),
            "One feature per object, in the raster's CRS: class_id, class_name, score (0-1), area "
            "(square map units) and, for oriented boxes, angle (degrees clockwise from east, 0-180).",
        )
        self.addOutput(QgsProcessingOutputNumber(self.OBJECTS, self.tr("Objects found")))
        self.addOutput(QgsProcessingOutputString(self.COUNTS, self.tr("Objects per class (JSON)")))
        self.addOutput(QgsProcessingOutputNumber(self.TILES, self.tr("Tiles run")))

    # -- settings -----------------------------------------------------------------------------

    def _geometry(
        self, parameters: dict[str, Any], context: QgsProcessingContext, decoder: ObjectDecoder, model: str
    ) -> ObjectGeometry:
        geometry = GEOMETRIES[self.parameterAsEnum(parameters, self.OUTPUT_GEOMETRY, context)]
        if geometry is ObjectGeometry.POLYGONS and not decoder.has_masks:
            raise RsdlError(
                f"{self.OUTPUT_GEOMETRY}: instance polygons need an instance segmentation model (one "
                f"that outputs masks); the model '{model}' outputs boxes only. Choose boxes or centre "
                "points."
            )
        return geometry

    def _settings(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        backend: ModelBackend,
        tiling: TilingChoice,
    ) -> DetectionSettings:
        tile = tiling.tile_size_for(backend)
        confidence, iou = detection_thresholds(
            backend.spec,
            self._optional_double(parameters, self.CONFIDENCE_THRESHOLD, context),
            self._optional_double(parameters, self.IOU_THRESHOLD, context),
        )
        return DetectionSettings(
            tile_size=tile,
            overlap=tiling.overlap_for(backend.spec, tile),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            confidence=confidence,
            iou_threshold=iou,
            class_agnostic=self.parameterAsBoolean(parameters, self.CLASS_AGNOSTIC_NMS, context),
        )

    def _optional_double(
        self, parameters: dict[str, Any], name: str, context: QgsProcessingContext
    ) -> float | None:
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsDouble(parameters, name, context)

    @staticmethod
    def _classes(spec: ModelSpec, decoder: ObjectDecoder) -> list[LabelClass]:
        """Every class the model can output, named and coloured by its metadata."""
        names = {value: spec.class_name(value) for value in range(decoder.class_count)}
        return [
            LabelClass(value, name, spec.class_colors.get(value) or default_class_color(name, value + 1))
            for value, name in names.items()
        ]

    # -- run ----------------------------------------------------------------------------------

    def _detect(
        self,
        feedback: QgsProcessingFeedback,
        detection: TiledDetection,
        reader_factory: Any,
        writer: ObjectFileWriter,
        layer: QgsRasterLayer,
    ) -> dict[str, int]:
        counts = detection.run(
            reader_factory,
            writer.write,
            progress=lambda fraction: feedback.setProgress(DETECT_SHARE * fraction),
            is_cancelled=feedback.isCanceled,
        )
        if feedback.isCanceled():
            raise CancelledError()
        feedback.pushInfo(
            f"Tiles: {counts['run']} run in {counts['batches']} batches, {counts['skipped_nodata']} "
            "skipped (no data)."
        )
        for warning in run_warnings(counts, detection.settings.confidence, self.CONFIDENCE_THRESHOLD):
            feedback.pushWarning(warning)
        if counts["run"] == 0:
            feedback.pushWarning(
                f"Every tile of raster '{layer.name()}' is nodata (or outside EXTENT/AREA): no object "
                "was looked for. Check the raster's nodata value, the processing extent and the area "
                "polygons."
            )
        return counts

    def _regularized(
        self, path: str, work: str, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> str:
        """The objects of ``path`` squared off by QGIS's native:orthogonalize (a new file)."""
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(ORTHOGONALIZE)
        if algorithm is None:
            raise RsdlError(f"{self.REGULARIZE}: QGIS's {ORTHOGONALIZE} is not available in this QGIS.")
        output = str(Path(work) / "regularized.gpkg")
        results, ok = algorithm.run({"INPUT": path, "OUTPUT": output}, context, feedback)
        if not ok or feedback.isCanceled():
            raise CancelledError() if feedback.isCanceled() else RsdlError(f"{ORTHOGONALIZE} failed.")
        return results["OUTPUT"]

    def _write_output(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        objects_path: str,
        writer: ObjectFileWriter,
        classes: list[LabelClass],
        layer: QgsRasterLayer,
    ) -> str:
        """Copy the complete temporary objects into OUTPUT, styled; a cancel leaves no output."""
        fields = object_fields(writer.oriented)
        kind = WKB_POINT if writer.geometry is ObjectGeometry.CENTRES else WKB_MULTIPOLYGON
        # The sink is created only now, so a failed or cancelled run leaves no output file.
        sink, sink_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, kind, layer.crs())
        if context.willLoadLayerOnCompletion(sink_id):
            context.layerToLoadOnCompletionDetails(sink_id).setPostProcessor(
                ClassVectorStyler.create("class_name", classes)
            )
        added = copy_objects(objects_path, sink, fields, feedback)
        del sink  # closes (commits) the file, so that it can be checked
        if feedback.isCanceled():
            self.remove_written_layer(sink_id)
            raise CancelledError()
        self.check_written_layer(sink_id, added, self.OUTPUT)
        if added != writer.written:
            raise RsdlError(f"{self.OUTPUT}: {added} of {writer.written} objects were written.")
        feedback.setProgress(100.0)
        return sink_id

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layer = self.raster_layer(parameters, self.INPUT, context)
        backend = self.load_backend(parameters, context, feedback)
        spec = backend.spec
        model = Path(backend.path).name
        decoder = ObjectDecoder.for_backend(backend)
        geometry = self._geometry(parameters, context, decoder, model)
        tiling = self.TILING.read(self, parameters, context, layer)
        bands = self.raster_bands(parameters, context, feedback, backend, layer)
        grid, resampled = tiling.grid(layer, spec)
        settings = self._settings(parameters, context, backend, tiling)
        detection = TiledDetection(backend, spec, decoder, settings, grid.width, grid.height)
        feedback.pushInfo(
            f"Grid: {grid.width} x {grid.height} px of {grid.pixel_width:g} map units"
            f"{' (resampled to the model resolution)' if resampled else ''}; {len(detection.plan)} tiles "
            f"of {settings.tile_size} px, overlap {settings.overlap} px; {decoder.layout_name}; "
            f"confidence >= {settings.confidence:g}, IoU > {settings.iou_threshold:g} suppressed"
            f"{' across classes' if settings.class_agnostic else ' within a class'}."
        )
        classes = self._classes(spec, decoder)
        regularize = self.parameterAsBoolean(parameters, self.REGULARIZE, context)
        with tempfile.TemporaryDirectory(prefix="rsdl-detect-", dir=QgsProcessingUtils.tempFolder()) as work:
            area_mask = None
            if tiling.area is not None:
                area_mask = Path(work) / "area.tif"
                write_area_mask(tiling.area, grid, area_mask, context.transformContext())
            reader_factory = self.grid_reader_factory(layer, grid, bands, area_mask, feedback)
            objects_path = str(Path(work) / "objects.gpkg")
            with ObjectFileWriter(
                objects_path,
                grid,
                geometry,
                decoder.oriented,
                lambda value: spec.class_name(value),
                self.parameterAsDouble(parameters, self.MIN_AREA, context),
                self.parameterAsDouble(parameters, self.SIMPLIFY, context),
            ) as writer:
                counts = self._detect(feedback, detection, reader_factory, writer, layer)
            if regularize and geometry is ObjectGeometry.POLYGONS:
                objects_path = self._regularized(objects_path, work, context, feedback)
            elif regularize:
                feedback.pushInfo(f"{self.REGULARIZE} applies to instance polygons only; ignored.")
            dest_id = self._write_output(parameters, context, feedback, objects_path, writer, classes, layer)
        per_class = dict(sorted(writer.counts.items()))
        summary = ", ".join(f"{name} {count}" for name, count in per_class.items()) or "none"
        feedback.pushInfo(f"Objects: {writer.written} ({summary}).")
        return {
            self.OUTPUT: dest_id,
            self.OBJECTS: writer.written,
            self.COUNTS: json.dumps(per_class),
            self.TILES: counts["run"],
            self.EXECUTION_PROVIDER: backend.provider,
        }
