"""rsdl:classifytiles: one class per tile of a grid laid over a raster (or over an extent)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
    QgsRectangle,
)

from ..core.contract.model_spec import ModelType
from ..core.errors import CancelledError
from ..core.raster.grid import RasterGrid
from ..core.tiling.layouts import TileWindow
from ..inference.classifier import Classifier, TileGrid, classify_in_batches
from ..inference.tile_stream import TileStream
from ..qgis_io.compat import FAST_INSERT, NUMBER_DOUBLE, SOURCE_VECTOR_POLYGON, WKB_POLYGON
from ..qgis_io.provider_reader import ProviderWindowReader
from .classify_base import ClassifyAlgorithm
from .tiling_parameters import TilingParameters

MIN_VALID_FRACTION = 0.5  # SKIP_NODATA drops tiles with less valid data than this
CLASSIFY_SHARE = 90.0  # percent of the progress bar for classifying; the rest is writing


def tile_rectangle(grid: RasterGrid, tile: TileWindow, clip: QgsRectangle) -> QgsRectangle:
    """The tile's ground rectangle, cut to ``clip`` (edge tiles overhang the grid)."""
    return QgsRectangle(*grid.window_bounds(tile.row, tile.col, tile.size, tile.size)).intersect(clip)


class ClassifyTilesAlgorithm(ClassifyAlgorithm):
    NAME = "classifytiles"
    DISPLAY_NAME = "Classify raster tiles with a model"
    DESCRIPTION = (
        "Lays a grid of square tiles over a raster (or over an extent of it) and classifies each "
        "tile with an ONNX or TorchScript classification model: one polygon per tile with its "
        "class, the winning probability and the probability of every class. Tiles are read one "
        "batch at a time through QGIS (files, VRTs, web maps), at the model's resolution when "
        "resampling is on; edge tiles are padded by reflection and their polygons cut to the "
        "extent. The output layer is written once all tiles are classified, so a cancelled run "
        "leaves none."
    )

    INPUT = "INPUT"
    TILING = TilingParameters(overlap=False, area=False)
    STRIDE = "STRIDE"
    MIN_PROBABILITY = "MIN_PROBABILITY"
    SKIP_NODATA = "SKIP_NODATA"
    TILES = "TILES"
    SKIPPED = "SKIPPED"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster layer")),
            "The raster to classify tile by tile: a file, a VRT, or a WMS/XYZ layer (read through "
            "QGIS at the model's resolution).",
        )
        self.add_model_parameters(self.INPUT, self.MODEL_HELP)
        self.TILING.declare(self, ModelType.CLASSIFIER)
        self.add_parameter(
            QgsProcessingParameterNumber(self.STRIDE, self.tr("Stride (pixels)"), optional=True, minValue=1),
            "Distance between the top-left corners of neighbouring tiles, in pixels. Empty: the "
            "tile size (tiles touch). Smaller: tiles overlap; larger: gaps between tiles.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_PROBABILITY,
                self.tr("Minimum probability"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
                maxValue=1.0,
            ),
            "Tiles whose winning probability is below this are still written (the grid stays "
            "complete, probabilities included) but with class_id and class_name NULL.",
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(self.SKIP_NODATA, self.tr("Skip nodata tiles"), defaultValue=True),
            "On: tiles of which less than half the pixels inside the raster hold data are neither "
            "classified nor written. Off: every tile is classified, nodata pixels as they are.",
        )
        self.add_run_parameters(ModelType.CLASSIFIER, "Tiles")
        self.add_output_parameter(
            SOURCE_VECTOR_POLYGON,
            "Classified tiles",
            "One polygon per tile, in the raster's CRS, cut to the processing extent.",
        )
        self.addOutput(QgsProcessingOutputNumber(self.TILES, self.tr("Tiles classified")))
        self.addOutput(QgsProcessingOutputNumber(self.SKIPPED, self.tr("Tiles skipped as nodata")))

    def _classify_tiles(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        classifier: Classifier,
        reader_factory: Callable[[], ProviderWindowReader],
        tiles: TileGrid,
        grid: RasterGrid,
    ) -> np.ndarray:
        """One row of probabilities per tile (NaN: not classified, as a nodata tile)."""
        # Kept until the output is written: 8 bytes per tile for two classes against 3 KB of pixels
        # in a 32 px RGB tile, so memory stays a tiny fraction of the raster's size; pixels are held
        # a few batches at a time (the stream reads ahead).
        results = np.full((len(tiles), len(classifier.class_names)), np.nan, dtype=np.float32)
        skip_nodata = self.parameterAsBoolean(parameters, self.SKIP_NODATA, context)
        batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        stream = TileStream(
            tiles, grid.width, grid.height, reader_factory, batch_size, feedback.isCanceled, not skip_nodata
        )

        def crops():
            for batch in stream:
                for item in batch:
                    if item.data is not None and not (
                        skip_nodata and item.valid_fraction < MIN_VALID_FRACTION
                    ):
                        yield item.tile.index, item.data

        with stream:
            for keys, classification in classify_in_batches(classifier, crops(), batch_size):
                results[keys] = classification.probabilities
                feedback.setProgress(CLASSIFY_SHARE * (keys[-1] + 1) / len(tiles))
                if feedback.isCanceled():
                    raise CancelledError()
        return results

    def _write_tiles(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        classifier: Classifier,
        layer: QgsRasterLayer,
        tiles: TileGrid,
        grid: RasterGrid,
        extent: QgsRectangle,
        results: np.ndarray,
    ) -> tuple[str, int]:
        """The classified tiles as polygons cut to the processing extent; returns OUTPUT's id and
        the count written."""
        classified = np.flatnonzero(~np.isnan(results[:, 0]))
        fields = self.class_fields(classifier)
        sink, dest_id = self.create_output(
            parameters, context, fields, WKB_POLYGON, layer.crs(), classifier, fields.at(1).name()
        )
        clip = QgsRectangle(*grid.bounds).intersect(extent)
        min_probability = self.parameterAsDouble(parameters, self.MIN_PROBABILITY, context)
        for count, index in enumerate(classified):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromRect(tile_rectangle(grid, tiles.window(int(index)), clip)))
            feature.setAttributes(self.class_attributes(classifier, results[index], min_probability))
            sink.addFeature(feature, FAST_INSERT)
            feedback.setProgress(CLASSIFY_SHARE + (100 - CLASSIFY_SHARE) * (count + 1) / len(classified))
        del sink  # closes (commits) the file, so that it can be checked
        self.check_written_layer(dest_id, len(classified), self.OUTPUT)
        return dest_id, len(classified)

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layer = self.raster_layer(parameters, self.INPUT, context)
        tiling = self.TILING.read(self, parameters, context, layer)
        classifier, bands = self.load_classifier(
            parameters, context, feedback, layer, tiling.tile_size, tiling.resample
        )
        grid, resampled = tiling.grid(layer, classifier.spec)
        stride = self.optional_int(parameters, self.STRIDE, context) or classifier.tile_size
        tiles = TileGrid(grid.width, grid.height, classifier.tile_size, stride)
        feedback.pushInfo(
            f"Grid: {grid.width} x {grid.height} px of {grid.pixel_width:g} map units"
            f"{' (resampled to the model resolution)' if resampled else ''}; {len(tiles)} tiles "
            f"({tiles.columns} x {tiles.rows}), stride {stride} px."
        )
        source = layer.dataProvider().clone()
        results = self._classify_tiles(
            parameters,
            context,
            feedback,
            classifier,
            lambda: ProviderWindowReader(source, grid, bands),
            tiles,
            grid,
        )
        dest_id, classified = self._write_tiles(
            parameters, context, feedback, classifier, layer, tiles, grid, tiling.extent_on(layer), results
        )
        skipped = len(tiles) - classified
        feedback.pushInfo(f"Tiles: {classified} classified, {skipped} skipped (mostly nodata).")
        if not classified:
            feedback.pushWarning(
                f"No tile of raster '{layer.name()}' holds enough data to classify: the output is "
                "empty. Check the raster's nodata value and the processing extent, or switch off "
                "SKIP_NODATA."
            )
        return {
            self.OUTPUT: dest_id,
            self.EXECUTION_PROVIDER: classifier.backend.provider,
            self.TILES: classified,
            self.SKIPPED: skipped,
        }
