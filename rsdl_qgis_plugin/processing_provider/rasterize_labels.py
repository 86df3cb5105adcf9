"""rsdl:rasterizelabels: vector labels to a class mask on a raster's grid."""

from __future__ import annotations

import json
from typing import Any

from osgeo import gdal
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterCrs,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.errors import RsdlError
from ..core.files.atomic_output import AtomicOutputs
from ..core.raster.grid import RasterGrid
from ..qgis_io.compat import NUMBER_DOUBLE, SOURCE_VECTOR_ANY_GEOMETRY
from ..qgis_io.gdal_calls import raise_if_cancelled
from ..qgis_io.label_source import burn_labels
from ..qgis_io.raster_grid import grid_from_extent, grid_from_raster_layer, open_gdal
from .base_algorithm import RsdlAlgorithm
from .label_parameters import LabelParameters
from .layer_styling import ClassRasterStyler
from .reports import report_class_statistics


class RasterizeLabelsAlgorithm(RsdlAlgorithm):
    NAME = "rasterizelabels"
    DISPLAY_NAME = "Rasterize labels to a class mask"
    GROUP = "Training data"
    GROUP_ID = "trainingdata"
    DESCRIPTION = (
        "Burns vector labels into a class mask that takes the exact grid (extent, pixel size, "
        "CRS) of a reference raster, or of an extent and pixel size. Classes come from a "
        "numeric or text field, from a constant, or from the layer (one class per layer, named "
        "after it). Vectors are reprojected to the grid, invalid geometries repaired, and "
        "lines/points buffered. Pixels under no label get the background value (or the ignore "
        "value for sparse samples); reference nodata becomes the ignore value, which is also "
        "the mask's nodata. The mask is the smallest unsigned type that fits, with a colour "
        "table and class names, and is written in blocks."
    )

    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    EXTENT = "EXTENT"
    PIXEL_SIZE = "PIXEL_SIZE"
    TARGET_CRS = "TARGET_CRS"
    ALL_TOUCHED = LabelParameters.ALL_TOUCHED
    OUTPUT = "OUTPUT"
    STATISTICS = "STATISTICS"
    CHART = "CHART"
    CLASS_STATISTICS = "CLASS_STATISTICS"
    REPAIRED_GEOMETRIES = "REPAIRED_GEOMETRIES"

    def _add_grid_parameters(self) -> None:
        """The grid parameters, declared between the class parameters and the other label rules."""
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.REFERENCE, self.tr("Reference raster (grid)"), optional=True
            ),
            "The mask takes this raster's exact grid: extent, pixel size, CRS and shape. Its "
            "nodata pixels become the ignore value. Leave empty to give EXTENT and PIXEL_SIZE.",
        )
        self.add_parameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent (without reference)"), optional=True),
            "Grid extent when no REFERENCE is given, e.g. 'xmin,xmax,ymin,ymax [EPSG:32636]'. "
            "The grid starts at the extent's top-left corner.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.PIXEL_SIZE,
                self.tr("Pixel size (without reference)"),
                NUMBER_DOUBLE,
                optional=True,
                minValue=0.0,
            ),
            "Pixel size in the units of the grid CRS when no REFERENCE is given.",
        )
        self.add_parameter(
            QgsProcessingParameterCrs(
                self.TARGET_CRS, self.tr("Grid CRS (without reference)"), optional=True
            ),
            "CRS of the grid when no REFERENCE is given; defaults to the extent's CRS.",
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(
                self.INPUT, self.tr("Label layers"), SOURCE_VECTOR_ANY_GEOMETRY
            ),
            "One or more vector layers of labels (polygons, lines or points), in any CRS. "
            "Without FIELD or BURN_VALUE each layer is one class: values 1, 2, ... in the order "
            "given, named after the layer (e.g. the layers of a multi-layer GeoPackage).",
        )
        LabelParameters.declare(self, after_class_parameters=self._add_grid_parameters)
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Label mask")),
            "The class mask (GeoTIFF, DEFLATE-compressed), with a colour table, class names and "
            "the ignore value as nodata. A style file (.qml) is written beside it.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.STATISTICS,
                self.tr("Class statistics (JSON)"),
                "JSON files (*.json)",
                optional=True,
                createByDefault=False,
            ),
            "Optional JSON file with per-class pixel counts, shares and suggested class weights.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.CHART,
                self.tr("Class distribution chart (PNG)"),
                "PNG files (*.png)",
                optional=True,
                createByDefault=False,
            ),
            "Optional bar chart of pixels per class (needs matplotlib).",
        )
        self.addOutput(QgsProcessingOutputString(self.CLASS_STATISTICS, self.tr("Class statistics")))
        self.addOutput(QgsProcessingOutputNumber(self.REPAIRED_GEOMETRIES, self.tr("Repaired geometries")))

    def _grid(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[RasterGrid, gdal.Dataset | None]:
        """The output grid (and the reference dataset, for its nodata) from the parameters."""
        reference = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
        if reference is not None:
            return grid_from_raster_layer(reference), open_gdal(reference)
        if parameters.get(self.EXTENT) in (None, "") or parameters.get(self.PIXEL_SIZE) in (None, ""):
            raise RsdlError("Give a REFERENCE raster, or an EXTENT and a PIXEL_SIZE for the output grid.")
        crs = self.parameterAsCrs(parameters, self.TARGET_CRS, context)
        if not crs.isValid():
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        extent = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
        pixel_size = self.parameterAsDouble(parameters, self.PIXEL_SIZE, context)
        return grid_from_extent(extent, crs, pixel_size), None

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layers = LabelParameters.read_layers(self, parameters, context, self.INPUT)
        rules = LabelParameters.read_rules(self, parameters, context)
        grid, reference = self._grid(parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        statistics_path = self.parameterAsFileOutput(parameters, self.STATISTICS, context)
        chart_path = self.parameterAsFileOutput(parameters, self.CHART, context)
        # Mask, style, statistics and chart appear together or not at all (a full disk).
        with AtomicOutputs() as outputs:
            mask = burn_labels(
                layers, rules, grid, reference, output, context.transformContext(), feedback, outputs
            )
            table = report_class_statistics(
                mask.classes, mask.statistics, mask.values, feedback, statistics_path, chart_path, outputs
            )
            raise_if_cancelled(feedback)  # a cancel at the very end still leaves nothing

        if context.willLoadLayerOnCompletion(output):
            details = context.layerToLoadOnCompletionDetails(output)
            details.setPostProcessor(ClassRasterStyler.create(mask.classes, mask.values))
        return {
            self.OUTPUT: output,
            self.STATISTICS: statistics_path or None,
            self.CHART: chart_path or None,
            self.CLASS_STATISTICS: json.dumps(table),
            self.REPAIRED_GEOMETRIES: mask.repaired,
        }
