"""rsdl:segment: run a segmentation or regression model over a raster layer, tiled and blended."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)

from ..core.contract.model_spec import ModelSpec, ModelType
from ..core.errors import CancelledError, RsdlError
from ..core.files.atomic_output import AtomicOutputs
from ..core.labels.label_rules import LabelClass, MaskValues
from ..core.raster.grid import RasterGrid
from ..core.tiling.blending import BlendMode
from ..inference.backends import ModelBackend
from ..inference.engine import InferenceSettings, TiledInference
from ..inference.sinks import (
    DEFAULT_OVERLAP_PERCENT,
    DEFAULT_TILE_SIZE,
    FLOAT_NODATA,
    SegmentationSink,
    ValueSink,
    class_nodata_value,
    head_classes,
)
from ..qgis_io.area_mask import MaskedWindowReader, write_area_mask
from ..qgis_io.compat import (
    FAST_INSERT,
    FIELD_DOUBLE,
    FIELD_INT,
    FIELD_STRING,
    NUMBER_DOUBLE,
    SOURCE_VECTOR_POLYGON,
    WKB_MULTIPOLYGON,
)
from ..qgis_io.polygonize import polygonize_classes
from ..qgis_io.processing_grid import processing_grid
from ..qgis_io.provider_reader import ProviderWindowReader
from ..qgis_io.raster_description import RasterDescription, class_raster_description
from ..qgis_io.raster_writer import GeoTiffRowWriter
from ..qgis_io.stripe_reader import stripe_reader_factory
from ..qgis_io.styling import write_class_style
from .layer_styling import ClassRasterStyler, ClassVectorStyler
from .model_algorithm import ModelAlgorithm

MERGE_MODES = (BlendMode.PYRAMID, BlendMode.GAUSSIAN, BlendMode.MEAN, BlendMode.CENTRE_CROP)
# Styles of predicted class rasters: every value is a model class; nodata is left transparent.
PREDICTION_VALUES = MaskValues(background_value=0, ignore_value=65535, unlabelled_is_ignore=True)


def head_path(output: str, head: int) -> str:
    """The file of output head ``head`` (0: OUTPUT itself; others beside it)."""
    if head == 0:
        return output
    path = Path(output)
    return str(path.with_name(f"{path.stem}_head{head + 1}{path.suffix}"))


class SegmentAlgorithm(ModelAlgorithm):
    NAME = "segment"
    DISPLAY_NAME = "Segment a raster with a model"
    DESCRIPTION = (
        "Runs an ONNX or TorchScript segmentation (or regression) model over a raster layer: "
        "a file, a VRT or a web map. The raster is streamed tile by tile (memory does not grow "
        "with its size), overlapping tiles are blended so no seams show, nodata stays nodata, "
        "and all-nodata tiles are skipped. Tile size, overlap, classes, colours, normalisation "
        "and resolution come from the model's metadata (rsdl or Deepness keys) unless "
        "overridden. Outputs: a styled class raster (a float raster for regression models), an "
        "optional confidence raster and optional class polygons. Extra output heads are "
        "written beside OUTPUT as <name>_head2.tif, ..."
    )

    INPUT = "INPUT"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    MERGE = "MERGE"
    RESAMPLE = "RESAMPLE"
    EXTENT = "EXTENT"
    AREA = "AREA"
    OUTPUT = "OUTPUT"
    CONFIDENCE = "CONFIDENCE"
    OUTPUT_POLYGONS = "OUTPUT_POLYGONS"
    MIN_AREA = "MIN_AREA"
    SIMPLIFY = "SIMPLIFY"
    HEAD_OUTPUTS = "HEAD_OUTPUTS"
    TILES = "TILES"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster layer")),
            "The raster to run the model on: a file, a VRT, or a WMS/XYZ layer (read through "
            "QGIS at the model's resolution).",
        )
        self.add_model_parameters(
            self.INPUT,
            "A segmentation or regression model: ONNX, or TorchScript with the rsdl spec; "
            "Deepness models run as they are.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE, self.tr("Tile size (pixels)"), optional=True, minValue=8
            ),
            "Tile size in pixels. Empty: the model's fixed input size, else its metadata "
            f"(tile_size), else {DEFAULT_TILE_SIZE}.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Tile overlap (% of the tile)"),
                NUMBER_DOUBLE,
                optional=True,
                minValue=0.0,
                maxValue=90.0,
            ),
            "How much neighbouring tiles overlap, in percent of the tile size. Empty: the "
            f"model's metadata (tiles_overlap), else {DEFAULT_OVERLAP_PERCENT:g}%. Overlap "
            "wider than the model's receptive field removes seams.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.MERGE,
                self.tr("Blending of overlapping tiles"),
                options=[mode.value for mode in MERGE_MODES],
                defaultValue=0,
            ),
            "pyramid: weights falling from the tile centre to its edges (pytorch-toolbelt); "
            "gaussian: a Gaussian window; mean: plain average; centre-crop: each pixel from "
            "the one tile it is most central in (no averaging).",
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.RESAMPLE, self.tr("Resample to the model's resolution"), defaultValue=True
            ),
            "On: when the raster's pixel size differs from the resolution the model was trained "
            "at, run at the model's resolution (outputs are on that grid). Off: run on the "
            "raster's own pixels.",
        )
        self.add_parameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Processing extent"), optional=True),
            "Only process this extent (snapped to the raster's pixels). Empty: the whole layer.",
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.AREA,
                self.tr("Process only inside these polygons"),
                [SOURCE_VECTOR_POLYGON],
                optional=True,
            ),
            "Optional polygon layer: pixels outside its features are nodata in every output and "
            "tiles entirely outside are skipped.",
        )
        self.add_run_parameters(4, "Tiles")
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Classes")),
            "Class raster (Byte, 255 = nodata; UInt16 for 255 classes or more), styled with the "
            "model's class names and colours. Regression models write their values here as "
            "Float32 (NaN = nodata), one band per output channel.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterDestination(
                self.CONFIDENCE, self.tr("Confidence"), optional=True, createByDefault=False
            ),
            "Optional Float32 raster of the winning class's probability (0-1; NaN = nodata).",
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_POLYGONS,
                self.tr("Class polygons"),
                SOURCE_VECTOR_POLYGON,
                optional=True,
                createByDefault=False,
            ),
            "Optional polygons of the class regions (background left out), dissolved across tile "
            "seams, with class_id, class_name, mean_confidence and area.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_AREA,
                self.tr("Minimum polygon area"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
            ),
            "Polygons smaller than this (in square map units of the output) are dropped.",
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
            "Douglas-Peucker tolerance (map units) that smooths the pixel staircase; 0 keeps it.",
            advanced=True,
        )
        self.addOutput(QgsProcessingOutputString(self.HEAD_OUTPUTS, self.tr("Outputs of further heads")))
        self.addOutput(QgsProcessingOutputNumber(self.TILES, self.tr("Tiles run")))

    # -- parameters -------------------------------------------------------------------------

    def _tile_size(
        self, parameters: dict[str, Any], context: QgsProcessingContext, backend: ModelBackend
    ) -> int:
        fixed = backend.input_size[0] if backend.input_size[0] == backend.input_size[1] else None
        asked = parameters.get(self.TILE_SIZE) not in (None, "")
        size = self.parameterAsInt(parameters, self.TILE_SIZE, context) if asked else None
        if fixed and size and size != fixed:
            raise RsdlError(
                f"The model takes {fixed} x {fixed} pixel tiles; TILE_SIZE {size} cannot be used. "
                "Leave TILE_SIZE empty."
            )
        if backend.input_size[0] and backend.input_size[0] != backend.input_size[1]:
            raise RsdlError(
                f"The model '{Path(backend.path).name}' takes non-square {backend.input_size[0]} x "
                f"{backend.input_size[1]} inputs; only square tiles are supported. Export it with a "
                "square (or dynamic) input size."
            )
        return size or fixed or backend.spec.tile_size or DEFAULT_TILE_SIZE

    def _overlap(
        self, parameters: dict[str, Any], context: QgsProcessingContext, spec: ModelSpec, tile: int
    ) -> int:
        if parameters.get(self.OVERLAP) not in (None, ""):
            percent = self.parameterAsDouble(parameters, self.OVERLAP, context)
        elif spec.tiles_overlap_percent is not None:
            percent = spec.tiles_overlap_percent
        else:
            percent = DEFAULT_OVERLAP_PERCENT
        return min(tile - 1, round(tile * percent / 100.0))

    # -- outputs ----------------------------------------------------------------------------

    def _open_sinks(
        self,
        stack: contextlib.ExitStack,
        engine: TiledInference,
        spec: ModelSpec,
        grid: RasterGrid,
        output: str,
        confidence: str | None,
        outputs: AtomicOutputs,
    ) -> tuple[list, list[tuple[str, list[LabelClass] | None]]]:
        """A sink per head (files join ``outputs``); returns them and (path, classes or None for
        values) per head."""
        sinks, files = [], []
        for head, layout in enumerate(engine.heads):
            path = head_path(output, head)
            if spec.model_type == ModelType.REGRESSOR:
                writer = GeoTiffRowWriter(
                    path, grid, layout.channels, "float32", RasterDescription(nodata=FLOAT_NODATA), outputs
                )
                sinks.append(ValueSink(stack.enter_context(writer)))
                files.append((path, None))
                continue
            classes = head_classes(spec, layout, head)
            dtype, nodata = class_nodata_value([c.value for c in classes])
            values = MaskValues(background_value=nodata, ignore_value=nodata, unlabelled_is_ignore=True)
            description = class_raster_description(classes, values)
            class_writer = GeoTiffRowWriter(path, grid, 1, dtype, description, outputs)
            confidence_writer = None
            if head == 0 and confidence:
                confidence_writer = stack.enter_context(
                    GeoTiffRowWriter(
                        confidence, grid, 1, "float32", RasterDescription(nodata=FLOAT_NODATA), outputs
                    )
                )
            sinks.append(
                SegmentationSink(
                    stack.enter_context(class_writer), confidence_writer, spec.seg_thresh, dtype, nodata
                )
            )
            files.append((path, classes))
        return sinks, files

    def _write_polygons(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        class_raster: str,
        confidence_raster: str | None,
        classes: list[LabelClass],
        crs,
    ) -> str | None:
        """Polygonize the (still temporary) class raster into OUTPUT_POLYGONS."""
        names = {c.value: c.name for c in classes}
        skip = {c.value for c in classes if c.name.lower() in ("background", "_background")}
        # Polygonizing is the last 10 % of the progress bar (inference had the first 90 %).
        steps = QgsProcessingMultiStepFeedback(10, feedback)
        steps.setCurrentStep(9)
        polygons = polygonize_classes(
            class_raster,
            confidence_raster,
            skip,
            self.parameterAsDouble(parameters, self.MIN_AREA, context),
            self.parameterAsDouble(parameters, self.SIMPLIFY, context),
            steps,
        )
        steps.setProgress(100.0)
        if feedback.isCanceled():  # the last moment a cancel can still leave no output at all
            raise CancelledError()
        fields = QgsFields()
        fields.append(QgsField("class_id", FIELD_INT))
        fields.append(QgsField("class_name", FIELD_STRING))
        fields.append(QgsField("mean_confidence", FIELD_DOUBLE))
        fields.append(QgsField("area", FIELD_DOUBLE))
        # The sink is created only now, so a failed or cancelled run leaves no polygon file.
        sink, sink_id = self.parameterAsSink(
            parameters, self.OUTPUT_POLYGONS, context, fields, WKB_MULTIPOLYGON, crs
        )
        if context.willLoadLayerOnCompletion(sink_id):
            styler = ClassVectorStyler.create("class_name", classes)
            context.layerToLoadOnCompletionDetails(sink_id).setPostProcessor(styler)
        for polygon in polygons:
            feature = QgsFeature(fields)
            geometry = QgsGeometry()
            geometry.fromWkb(polygon.wkb)
            geometry.convertToMultiType()
            feature.setGeometry(geometry)
            feature.setAttributes(
                [
                    polygon.class_id,
                    names.get(polygon.class_id, str(polygon.class_id)),
                    polygon.mean_confidence,
                    polygon.area,
                ]
            )
            if not sink.addFeature(feature, FAST_INSERT):
                break  # the check below names the failure and removes the partial file
        del sink  # closes (commits) the file, so that it can be checked
        self.check_written_layer(sink_id, len(polygons), self.OUTPUT_POLYGONS)
        feedback.pushInfo(f"Polygons: {len(polygons)} class regions.")
        return sink_id

    # -- run --------------------------------------------------------------------------------

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layer = self.raster_layer(parameters, self.INPUT, context)
        backend = self.load_backend(parameters, context, feedback)
        spec = backend.spec
        if spec.model_type not in (ModelType.SEGMENTOR, ModelType.REGRESSOR):
            raise RsdlError(
                f"The model '{Path(backend.path).name}' is a {spec.model_type.value}; rsdl:segment "
                "runs Segmentor and Regressor models. Use rsdl:classifytiles or rsdl:classifyfeatures "
                "for classifiers."
            )
        bands = self.raster_bands(parameters, context, feedback, backend, layer)
        provider = layer.dataProvider()

        area = None
        if parameters.get(self.EXTENT) not in (None, ""):
            area = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        resample = self.parameterAsBoolean(parameters, self.RESAMPLE, context)
        grid, resampled = processing_grid(layer, area, spec.resolution_cm, resample)
        tile = self._tile_size(parameters, context, backend)
        settings = InferenceSettings(
            tile_size=tile,
            overlap=self._overlap(parameters, context, spec, tile),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            blend_mode=MERGE_MODES[self.parameterAsEnum(parameters, self.MERGE, context)],
        )
        feedback.pushInfo(
            f"Grid: {grid.width} x {grid.height} px of {grid.pixel_width:g} map units"
            f"{' (resampled to the model resolution)' if resampled else ''}; tiles {tile} px, "
            f"overlap {settings.overlap} px, {settings.blend_mode.value} blending, bands {list(bands)}."
        )
        engine = TiledInference(backend, spec, bands, settings, grid.width, grid.height)

        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        confidence = self.parameterAsOutputLayer(parameters, self.CONFIDENCE, context) or None
        wants_polygons = parameters.get(self.OUTPUT_POLYGONS) not in (None, "")
        if wants_polygons and spec.model_type == ModelType.REGRESSOR:
            raise RsdlError("Class polygons need a segmentation model; this one is a regressor.")

        with tempfile.TemporaryDirectory(prefix="rsdl-segment-", dir=QgsProcessingUtils.tempFolder()) as work:
            mask_path = None
            area_layer = self.parameterAsVectorLayer(parameters, self.AREA, context)
            if area_layer is not None:
                mask_path = write_area_mask(
                    area_layer, grid, Path(work) / "area.tif", context.transformContext()
                )
            source = provider.clone()
            # A file at its own pixels is read straight from GDAL; anything else through QGIS.
            stripe_reader = stripe_reader_factory(layer, grid, bands)
            feedback.pushDebugInfo(
                "Reading: " + ("GDAL, one stripe per tile row." if stripe_reader else "the QGIS provider.")
            )

            def reader_factory():
                reader = stripe_reader() if stripe_reader else ProviderWindowReader(source, grid, bands)
                return MaskedWindowReader(reader, mask_path) if mask_path else reader

            # Polygons need confidences: a temporary raster when none was asked for.
            confidence_path = confidence or (str(Path(work) / "confidence.tif") if wants_polygons else None)
            progress_share = 90.0 if wants_polygons else 100.0
            # Every raster (all heads, confidence) and its style appear together, and only once
            # each of them is complete: a full disk or a cancel leaves none of them.
            with AtomicOutputs() as outputs:
                with contextlib.ExitStack() as stack:
                    sinks, files = self._open_sinks(
                        stack, engine, spec, grid, output, confidence_path, outputs
                    )
                    counts = engine.run(
                        reader_factory,
                        sinks,
                        progress=lambda fraction: feedback.setProgress(progress_share * fraction),
                        is_cancelled=feedback.isCanceled,
                    )
                    if feedback.isCanceled():  # late cancels too: the writers then discard their files
                        raise CancelledError()
                feedback.pushInfo(
                    f"Tiles: {counts['run']} run in {counts['batches']} batches, "
                    f"{counts['skipped_nodata']} skipped (no data)."
                )
                if counts["run"] == 0:
                    feedback.pushWarning(
                        f"Every tile of raster '{layer.name()}' is nodata (or outside EXTENT/AREA): "
                        "the outputs hold only nodata. Check the raster's nodata value, the "
                        "processing extent and the area polygons."
                    )
                for path, classes in files:
                    if classes is not None:
                        write_class_style(path, classes, PREDICTION_VALUES, outputs)
                first_classes = files[0][1]
                polygons = None
                if wants_polygons:
                    polygons = self._write_polygons(
                        parameters,
                        context,
                        feedback,
                        str(outputs.temporary(output)),
                        str(outputs.temporary(confidence_path)),
                        first_classes,
                        layer.crs(),
                    )
            if first_classes is not None and context.willLoadLayerOnCompletion(output):
                styler = ClassRasterStyler.create(first_classes, PREDICTION_VALUES)
                context.layerToLoadOnCompletionDetails(output).setPostProcessor(styler)

            results: dict[str, Any] = {
                self.OUTPUT: output,
                self.CONFIDENCE: confidence,
                self.HEAD_OUTPUTS: json.dumps([path for path, _ in files[1:]]),
                self.EXECUTION_PROVIDER: backend.provider,
                self.TILES: counts["run"],
            }
            if wants_polygons:
                results[self.OUTPUT_POLYGONS] = polygons
        return results
