"""The tiling parameters of every algorithm that runs a model over a raster grid, declared and read as
one unit: TILE_SIZE, OVERLAP, RESAMPLE, EXTENT and AREA (BATCH_SIZE, DEVICE and THREADS are
``ModelAlgorithm.add_run_parameters``). The same names, help and reading in every algorithm; what
the values become (tile size, overlap in pixels) is decided in ``core/tiling/policy.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

from ..core.contract.model_spec import ModelSpec, ModelType
from ..core.raster.grid import RasterGrid
from ..core.tiling import policy
from ..inference.backends import ModelBackend
from ..qgis_io.compat import NUMBER_DOUBLE, SOURCE_VECTOR_POLYGON
from ..qgis_io.processing_grid import processing_grid
from .base_algorithm import RsdlAlgorithm

MIN_TILE_SIZE = 8


@dataclass(frozen=True)
class TilingChoice:
    """What the user chose; None where the model (or its type's default) decides."""

    tile_size: int | None
    overlap_percent: float | None
    resample: bool
    extent: QgsRectangle | None  # in the layer's CRS
    area: QgsVectorLayer | None

    def extent_on(self, layer: QgsRasterLayer) -> QgsRectangle:
        """The part of ``layer`` to process: EXTENT cut to the layer, else the whole layer."""
        return self.extent.intersect(layer.extent()) if self.extent is not None else layer.extent()

    def grid(self, layer: QgsRasterLayer, spec: ModelSpec) -> tuple[RasterGrid, bool]:
        """The processing grid, and whether it is resampled from the raster's own pixels."""
        return processing_grid(layer, self.extent, spec.resolution_cm, self.resample)

    def tile_size_for(self, backend: ModelBackend) -> int:
        return policy.tile_size(
            backend.spec,
            backend.input_size,
            self.tile_size,
            parameter=TilingParameters.TILE_SIZE,
            model_name=Path(backend.path).name,
        )

    def overlap_for(self, spec: ModelSpec, tile: int) -> int:
        return policy.overlap_pixels(spec, tile, self.overlap_percent)


@dataclass(frozen=True)
class TilingParameters:
    """Which of the tiling parameters an algorithm has (TILE_SIZE, RESAMPLE and EXTENT always)."""

    overlap: bool = True
    area: bool = True

    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    RESAMPLE = "RESAMPLE"
    EXTENT = "EXTENT"
    AREA = "AREA"

    def declare(self, algorithm: RsdlAlgorithm, model_type: ModelType) -> None:
        """Add the parameters to ``algorithm``; defaults are those of ``model_type``."""
        algorithm.add_parameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE, algorithm.tr("Tile size (pixels)"), optional=True, minValue=MIN_TILE_SIZE
            ),
            "Tile side in pixels. Empty: the model's fixed input size, else its metadata (tile_size), "
            f"else {policy.default_tile_size(model_type)}. A model with a fixed input size takes no other.",
        )
        if self.overlap:
            algorithm.add_parameter(
                QgsProcessingParameterNumber(
                    self.OVERLAP,
                    algorithm.tr("Tile overlap (% of the tile)"),
                    NUMBER_DOUBLE,
                    optional=True,
                    minValue=0.0,
                    maxValue=90.0,
                ),
                "How much neighbouring tiles overlap, in percent of the tile size. Empty: the "
                f"model's metadata (tiles_overlap), else {policy.DEFAULT_OVERLAP_PERCENT:g}%. Overlap "
                "wider than the model's receptive field removes seams.",
            )
        algorithm.add_parameter(
            QgsProcessingParameterBoolean(
                self.RESAMPLE, algorithm.tr("Resample to the model's resolution"), defaultValue=True
            ),
            "On: when the raster's pixel size differs from the resolution the model was trained at "
            "(metadata 'resolution'), run at the model's resolution (outputs are on that grid). Off: "
            "run on the raster's own pixels.",
        )
        algorithm.add_parameter(
            QgsProcessingParameterExtent(self.EXTENT, algorithm.tr("Processing extent"), optional=True),
            "Only process this extent: on the raster's own pixels it is snapped outwards to them; at the "
            "model's resolution the grid starts at its top-left corner. Empty: the whole layer.",
        )
        if self.area:
            algorithm.add_parameter(
                QgsProcessingParameterFeatureSource(
                    self.AREA,
                    algorithm.tr("Process only inside these polygons"),
                    [SOURCE_VECTOR_POLYGON],
                    optional=True,
                ),
                "Optional polygon layer: pixels outside its features are nodata in every output and "
                "tiles entirely outside are skipped.",
            )

    def read(
        self,
        algorithm: RsdlAlgorithm,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        layer: QgsRasterLayer,
    ) -> TilingChoice:
        """The user's choices; EXTENT is returned in ``layer``'s CRS."""

        def given(name: str) -> bool:
            return parameters.get(name) not in (None, "")

        return TilingChoice(
            tile_size=algorithm.parameterAsInt(parameters, self.TILE_SIZE, context)
            if given(self.TILE_SIZE)
            else None,
            overlap_percent=algorithm.parameterAsDouble(parameters, self.OVERLAP, context)
            if self.overlap and given(self.OVERLAP)
            else None,
            resample=algorithm.parameterAsBoolean(parameters, self.RESAMPLE, context),
            extent=algorithm.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if given(self.EXTENT)
            else None,
            area=algorithm.parameterAsVectorLayer(parameters, self.AREA, context) if self.area else None,
        )
