"""rsdl:classifytiles: one class per tile of a grid laid over a raster (or over an extent)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRectangle,
)

from ..core.errors import CancelledError
from ..core.raster.grid import RasterGrid
from ..core.tiling.plan import TileWindow, pad_tile
from ..inference.classifier import TileGrid, classify_in_batches
from ..qgis_io.compat import FAST_INSERT, NUMBER_DOUBLE, SOURCE_VECTOR_POLYGON, WKB_POLYGON
from ..qgis_io.processing_grid import processing_grid
from ..qgis_io.provider_reader import ProviderWindowReader
from .classify_base import DEFAULT_BATCH_SIZE, ClassifyAlgorithm

MIN_VALID_FRACTION = 0.5  # SKIP_NODATA drops tiles with less valid data than this
CLASSIFY_SHARE = 90.0  # percent of the progress bar for classifying; the rest is writing


def tile_rectangle(grid: RasterGrid, tile: TileWindow, clip: QgsRectangle) -> QgsRectangle:
    """The tile's ground rectangle, cut to ``clip`` (edge tiles overhang the grid)."""
    x0, dx, _, y0, _, dy = grid.geotransform
    rectangle = QgsRectangle(
        x0 + tile.col * dx,
        y0 + (tile.row + tile.size) * dy,
        x0 + (tile.col + tile.size) * dx,
        y0 + tile.row * dy,
    )
    return rectangle.intersect(clip)


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
    TILE_SIZE = "TILE_SIZE"
    STRIDE = "STRIDE"
    RESAMPLE = "RESAMPLE"
    EXTENT = "EXTENT"
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
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE, self.tr("Tile size (pixels)"), optional=True, minValue=8
            ),
            "Tile side in pixels of the processing grid. Empty: the model's fixed input size, else "
            "its metadata (tile_size). A model with a fixed input size takes no other.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(self.STRIDE, self.tr("Stride (pixels)"), optional=True, minValue=1),
            "Distance between the top-left corners of neighbouring tiles, in pixels. Empty: the "
            "tile size (tiles touch). Smaller: tiles overlap; larger: gaps between tiles.",
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.RESAMPLE, self.tr("Resample to the model's resolution"), defaultValue=True
            ),
            "On: when the raster's pixel size differs from the resolution the model was trained "
            "at (metadata 'resolution'), tiles are read at the model's resolution. Off: tiles are "
            "taken from the raster's own pixels.",
        )
        self.add_parameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Processing extent"), optional=True),
            "Only lay tiles over this extent (the grid starts at its top-left corner). Empty: the "
            "whole layer.",
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
        self.add_run_parameters(DEFAULT_BATCH_SIZE, "Tiles")
        self.add_output_parameter(
            SOURCE_VECTOR_POLYGON,
            "Classified tiles",
            "One polygon per tile, in the raster's CRS, cut to the processing extent.",
        )
        self.addOutput(QgsProcessingOutputNumber(self.TILES, self.tr("Tiles classified")))
        self.addOutput(QgsProcessingOutputNumber(self.SKIPPED, self.tr("Tiles skipped as nodata")))

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layer = self.raster_layer(parameters, self.INPUT, context)
        tile_size = self.optional_int(parameters, self.TILE_SIZE, context)
        resample = self.parameterAsBoolean(parameters, self.RESAMPLE, context)
        classifier, bands = self.load_classifier(parameters, context, feedback, layer, tile_size, resample)

        area = layer.extent()
        if parameters.get(self.EXTENT) not in (None, ""):
            area = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs()).intersect(area)
        grid, resampled = processing_grid(layer, area, classifier.spec.resolution_cm, resample)
        stride = self.optional_int(parameters, self.STRIDE, context) or classifier.tile_size
        tiles = TileGrid(grid.width, grid.height, classifier.tile_size, stride)
        feedback.pushInfo(
            f"Grid: {grid.width} x {grid.height} px of {grid.pixel_width:g} map units"
            f"{' (resampled to the model resolution)' if resampled else ''}; {len(tiles)} tiles "
            f"({tiles.columns} x {tiles.rows}), stride {stride} px."
        )

        # One row of probabilities per tile (NaN: not classified) until the output is written:
        # 8 bytes per tile for two classes against 3 KB of pixels in a 32 px RGB tile, so memory
        # stays a tiny fraction of the raster's size; pixels are held one batch at a time.
        results = np.full((len(tiles), len(classifier.class_names)), np.nan, dtype=np.float32)
        reader = ProviderWindowReader(layer.dataProvider().clone(), grid, bands)
        skip_nodata = self.parameterAsBoolean(parameters, self.SKIP_NODATA, context)

        def crops():
            for tile in tiles:
                if feedback.isCanceled():
                    raise CancelledError()
                row, col, rows, cols = tile.read_window(grid.width, grid.height)
                data, valid = reader.read(row, col, rows, cols)
                if skip_nodata and valid.mean() < MIN_VALID_FRACTION:
                    continue
                yield tile.index, pad_tile(data, tile.padding(grid.width, grid.height))

        batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        for keys, classification in classify_in_batches(classifier, crops(), batch_size):
            results[keys] = classification.probabilities
            feedback.setProgress(CLASSIFY_SHARE * (keys[-1] + 1) / len(tiles))
            if feedback.isCanceled():
                raise CancelledError()

        classified = np.flatnonzero(~np.isnan(results[:, 0]))
        fields = self.class_fields(classifier)
        sink, dest_id = self.create_output(
            parameters, context, fields, WKB_POLYGON, layer.crs(), classifier, fields.at(1).name()
        )
        clip = QgsRectangle(*grid.bounds).intersect(area)
        min_probability = self.parameterAsDouble(parameters, self.MIN_PROBABILITY, context)
        for count, index in enumerate(classified):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromRect(tile_rectangle(grid, tiles.window(int(index)), clip)))
            feature.setAttributes(self.class_attributes(classifier, results[index], min_probability))
            sink.addFeature(feature, FAST_INSERT)
            feedback.setProgress(CLASSIFY_SHARE + (100 - CLASSIFY_SHARE) * (count + 1) / len(classified))
        del sink  # closes (commits) the file, so that it can be checked
        self.check_written_layer(dest_id, len(classified), self.OUTPUT)
        skipped = len(tiles) - len(classified)
        feedback.pushInfo(f"Tiles: {len(classified)} classified, {skipped} skipped (mostly nodata).")
        if not len(classified):
            feedback.pushWarning(
                f"No tile of raster '{layer.name()}' holds enough data to classify: the output is "
                "empty. Check the raster's nodata value and the processing extent, or switch off "
                "SKIP_NODATA."
            )
        return {
            self.OUTPUT: dest_id,
            self.EXECUTION_PROVIDER: classifier.backend.provider,
            self.TILES: len(classified),
            self.SKIPPED: skipped,
        }
