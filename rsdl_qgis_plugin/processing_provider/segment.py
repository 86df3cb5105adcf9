"""rsdl:segment: run a segmentation or regression model over a raster layer, tiled and blended."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..core.contract.model_spec import ModelSpec, ModelType
from ..core.contract.model_types import role_of
from ..core.errors import CancelledError, RsdlError
from ..core.files.atomic_output import AtomicOutputs
from ..core.labels.class_matching import is_background_name
from ..core.labels.label_rules import LabelClass, MaskValues
from ..core.raster.grid import RasterGrid
from ..core.tiling.blending import BlendMode
from ..inference.backends import ModelBackend
from ..inference.engine import InferenceSettings, TiledInference
from ..inference.sinks import (
    FLOAT_NODATA,
    SegmentationSink,
    ValueSink,
    class_nodata_value,
    head_classes,
)
from ..qgis_io.area_mask import write_area_mask
from ..qgis_io.compat import (
    NUMBER_DOUBLE,
    SOURCE_VECTOR_POLYGON,
    WKB_MULTIPOLYGON,
)
from ..qgis_io.polygonize import add_class_polygons, class_polygon_fields, polygonize_classes
from ..qgis_io.raster_description import RasterDescription, class_raster_description
from ..qgis_io.raster_writer import GeoTiffRowWriter
from ..qgis_io.styling import write_class_style
from .layer_styling import ClassRasterStyler, ClassVectorStyler
from .model_algorithm import ModelAlgorithm
from .tiling_parameters import TilingChoice, TilingParameters

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
    TILING = TilingParameters(overlap=True, area=True)
    MERGE = "MERGE"
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
        self.TILING.declare(self, ModelType.SEGMENTOR)
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
        self.add_run_parameters(ModelType.SEGMENTOR, "Tiles")
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
            if not role_of(spec.model_type).class_scores:
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
        skip = {c.value for c in classes if is_background_name(c.name)}
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
        fields = class_polygon_fields()
        # The sink is created only now, so a failed or cancelled run leaves no polygon file.
        sink, sink_id = self.parameterAsSink(
            parameters, self.OUTPUT_POLYGONS, context, fields, WKB_MULTIPOLYGON, crs
        )
        if context.willLoadLayerOnCompletion(sink_id):
            styler = ClassVectorStyler.create("class_name", classes)
            context.layerToLoadOnCompletionDetails(sink_id).setPostProcessor(styler)
        # A refused feature stops the writing: the check below names the failure and removes the
        # partial file.
        add_class_polygons(sink, fields, polygons, names)
        del sink  # closes (commits) the file, so that it can be checked
        self.check_written_layer(sink_id, len(polygons), self.OUTPUT_POLYGONS)
        feedback.pushInfo(f"Polygons: {len(polygons)} class regions.")
        return sink_id

    # -- run --------------------------------------------------------------------------------

    def _engine(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        layer: QgsRasterLayer,
        backend: ModelBackend,
        tiling: TilingChoice,
    ) -> tuple[TiledInference, RasterGrid, tuple[int, ...]]:
        """The engine over the processing grid, after the raster and model checks."""
        spec = backend.spec
        bands = self.raster_bands(parameters, context, feedback, backend, layer)
        grid, resampled = tiling.grid(layer, spec)
        tile = tiling.tile_size_for(backend)
        settings = InferenceSettings(
            tile_size=tile,
            overlap=tiling.overlap_for(spec, tile),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            blend_mode=MERGE_MODES[self.parameterAsEnum(parameters, self.MERGE, context)],
        )
        feedback.pushInfo(
            f"Grid: {grid.width} x {grid.height} px of {grid.pixel_width:g} map units"
            f"{' (resampled to the model resolution)' if resampled else ''}; tiles {tile} px, "
            f"overlap {settings.overlap} px, {settings.blend_mode.value} blending, bands {list(bands)}."
        )
        return TiledInference(backend, spec, bands, settings, grid.width, grid.height), grid, bands

    def _run_engine(
        self,
        engine: TiledInference,
        sinks: list,
        reader_factory: Callable[[], Any],
        progress_share: float,
        layer: QgsRasterLayer,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, int]:
        """Stream every tile through the model into the sinks; returns the engine's counts."""
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
        return counts

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layer = self.raster_layer(parameters, self.INPUT, context)
        backend = self.load_backend(parameters, context, feedback)
        spec = backend.spec
        tiling = self.TILING.read(self, parameters, context, layer)
        engine, grid, bands = self._engine(parameters, context, feedback, layer, backend, tiling)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        confidence = self.parameterAsOutputLayer(parameters, self.CONFIDENCE, context) or None
        wants_polygons = parameters.get(self.OUTPUT_POLYGONS) not in (None, "")
        if wants_polygons and not role_of(spec.model_type).class_scores:
            raise RsdlError("Class polygons need a segmentation model; this one is a regressor.")

        with tempfile.TemporaryDirectory(prefix="rsdl-segment-", dir=QgsProcessingUtils.tempFolder()) as work:
            area_mask = None
            if tiling.area is not None:
                area_mask = Path(work) / "area.tif"
                write_area_mask(tiling.area, grid, area_mask, context.transformContext())
            reader_factory = self.grid_reader_factory(layer, grid, bands, area_mask, feedback)
            # Polygons need confidences: a temporary raster when none was asked for.
            confidence_path = confidence or (str(Path(work) / "confidence.tif") if wants_polygons else None)
            # Every raster (all heads, confidence) and its style appear together, and only once
            # each of them is complete: a full disk or a cancel leaves none of them.
            with AtomicOutputs() as outputs:
                with contextlib.ExitStack() as stack:
                    sinks, files = self._open_sinks(
                        stack, engine, spec, grid, output, confidence_path, outputs
                    )
                    share = 90.0 if wants_polygons else 100.0
                    counts = self._run_engine(engine, sinks, reader_factory, share, layer, feedback)
                for path, classes in files:
                    if classes is not None:
                        write_class_style(path, classes, PREDICTION_VALUES, outputs)
                first_classes = files[0][1]
                polygons = None
                if wants_polygons:
                    rasters = str(outputs.temporary(output)), str(outputs.temporary(confidence_path))
                    polygons = self._write_polygons(
                        parameters, context, feedback, *rasters, first_classes, layer.crs()
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
