"""rsdl:exportchips: cut an image and its labels into training chips with a spatial split.

Declares and reads the parameters into ChipExportSettings (core/datasets/chip_export.py); the
chips are cut and the dataset written by qgis_io/chip_export.py. The chip plan, split and keep rules
are core/datasets/chips.py; the folder layout is core/datasets/chip_folder.py (both docstrings are
part of the algorithm's help). The image is read in strips of chip-size rows, so memory stays at
about chip size x image width x bands whatever the image size.
Everything is written into a temporary folder that becomes OUTPUT only when complete.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core.datasets import chip_folder as chip_dataset
from ..core.datasets import chips, object_chips
from ..core.datasets.chip_export import ChipExportSettings
from ..core.datasets.chip_folder import INDEX_FILE
from ..core.datasets.chips import (
    CHIP_MODE_DESCRIPTIONS,
    DEFAULT_BLOCK_CHIPS,
    ChipMode,
    ChipPlan,
    ChipRules,
    SplitSettings,
)
from ..core.datasets.object_chips import (
    DEFAULT_MIN_VISIBLE_FRACTION,
    OBJECT_FORMAT_DESCRIPTIONS,
    ObjectFormat,
    ObjectSettings,
)
from ..core.errors import RsdlError
from ..core.files.atomic_output import atomic_folder
from ..core.raster.grid import RasterGrid
from ..qgis_io.chip_export import cut_chips, write_chip_dataset
from ..qgis_io.compat import NUMBER_DOUBLE, NUMBER_INTEGER, SOURCE_VECTOR_ANY_GEOMETRY, SOURCE_VECTOR_POLYGON
from ..qgis_io.gdal_calls import raise_if_cancelled
from ..qgis_io.label_source import LabelSource, label_mask
from ..qgis_io.object_chips import open_object_chips
from ..qgis_io.raster_grid import grid_from_raster_layer, open_gdal
from .base_algorithm import RsdlAlgorithm
from .label_parameters import LabelParameters

GRID_HINT = (
    "Rasterize the labels with the image as REFERENCE (rsdl:rasterizelabels), or give them as vector LABELS."
)


class ExportChipsAlgorithm(RsdlAlgorithm):
    NAME = "exportchips"
    DISPLAY_NAME = "Export training chips"
    GROUP = "Training data"
    GROUP_ID = "trainingdata"
    DESCRIPTION = (
        "Cuts an image and its labels (a label mask on the image's grid, or vector labels "
        "rasterized onto it by the rules of 'Rasterize labels to a class mask') into square "
        "training chips: georeferenced image/mask GeoTIFF pairs for segmentation and/or image "
        "chips in class folders for classification, or image chips with object annotations "
        "(COCO JSON, YOLO txt or Pascal VOC xml) from vector labels, one object per feature. "
        "Chips are split into train, validation and "
        "test sets by spatial blocks, so that no validation or test chip shares a pixel with a "
        "training chip. Nodata and all-ignore chips are skipped; a share of empty chips can be "
        "dropped. Writes a GeoPackage index of chip footprints and a dataset.json that "
        "describes the dataset; the output folder appears only when the export is complete."
        f"<h3>Rules</h3><pre>{html.escape(chips.__doc__ or '')}</pre>"
        f"<h3>Object chips</h3><pre>{html.escape(object_chips.__doc__ or '')}</pre>"
        f"<h3>Output folder</h3><pre>{html.escape(chip_dataset.__doc__ or '')}</pre>"
    )

    INPUT = "INPUT"
    MASK = "MASK"
    LABELS = "LABELS"
    CHIP_SIZE = "CHIP_SIZE"
    STRIDE = "STRIDE"
    MODE = "MODE"
    MIN_COVER = "MIN_COVER"
    OBJECT_FORMAT = "OBJECT_FORMAT"
    MIN_VISIBLE_FRACTION = "MIN_VISIBLE_FRACTION"
    VAL_FRACTION = "VAL_FRACTION"
    TEST_FRACTION = "TEST_FRACTION"
    SPLIT_BLOCK = "SPLIT_BLOCK"
    SEED = "SEED"
    KEEP_EMPTY = "KEEP_EMPTY"
    OUTPUT = "OUTPUT"
    INDEX = "INDEX"
    CHIP_COUNTS = "CHIP_COUNTS"
    STATISTICS = "STATISTICS"
    OBJECT_COUNTS = "OBJECT_COUNTS"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Image raster")),
            "The image to cut (a raster file GDAL reads: GeoTIFF, VRT...). Chips keep its data "
            "type, bands and nodata; its nodata pixels become the ignore value in mask chips.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.MASK, self.tr("Label mask raster"), optional=True),
            "A one-band label mask on exactly the image's grid (same size, geotransform and "
            "CRS), e.g. from 'Rasterize labels to a class mask' with the image as REFERENCE. Its "
            "classes, background and ignore values are read from it; for other masks the ignore "
            "value is the mask's nodata (else IGNORE_VALUE) and the background is "
            "BACKGROUND_VALUE. Give MASK or LABELS, not both.",
        )
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(
                self.LABELS,
                self.tr("Vector label layers"),
                SOURCE_VECTOR_ANY_GEOMETRY,
                optional=True,
            ),
            "Vector labels, instead of MASK: they are rasterized onto the image's grid with the "
            "class, value, overlap and buffer parameters below (the rules of 'Rasterize labels "
            "to a class mask') into a temporary mask that is deleted afterwards.",
        )
        LabelParameters.declare(self)
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CHIP_SIZE,
                self.tr("Chip size (pixels)"),
                NUMBER_INTEGER,
                defaultValue=256,
            ),
            f"Side of the square chips in pixels, from {chips.MIN_CHIP_SIZE} up to the image's smaller side.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.STRIDE,
                self.tr("Stride (pixels, 0: chip size)"),
                NUMBER_INTEGER,
                defaultValue=0,
            ),
            "Distance between the starts of neighbouring chips. 0 means the chip size (chips "
            "touch without overlap); smaller values make overlapping chips. The last chip of a "
            "row or column is moved flush with the image edge.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.MODE,
                self.tr("Chips for"),
                options=[CHIP_MODE_DESCRIPTIONS[m] for m in ChipMode],
                defaultValue=int(ChipMode.SEGMENTATION),
            ),
            "0: segmentation image/mask pairs; 1: classification chips in class folders; 2: both; "
            "3: objects: image chips with object annotations in OBJECT_FORMAT, from vector LABELS "
            "(each feature is one object; a MASK is refused).",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_COVER,
                self.tr("Minimum class cover (classification)"),
                NUMBER_DOUBLE,
                defaultValue=0.5,
            ),
            "Classification: a chip takes the foreground class with the largest share of its "
            "labelled pixels when that share is at least this (0..1); a chip without foreground "
            "takes 'background'; other chips are ambiguous and get no class folder.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.OBJECT_FORMAT,
                self.tr("Object annotation format (objects)"),
                options=[OBJECT_FORMAT_DESCRIPTIONS[f] for f in ObjectFormat],
                defaultValue=int(ObjectFormat.COCO),
            ),
            "MODE objects: 0: COCO JSON, one <split>/annotations.json with boxes, areas and "
            "instance polygons in chip pixels; 1: YOLO txt, one <split>/labels/<chip>.txt of "
            "'class cx cy w h' (normalised) per chip and a data.yaml; 2: Pascal VOC xml, one "
            "<split>/annotations/<chip>.xml per chip. Ignored in the other modes.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_VISIBLE_FRACTION,
                self.tr("Minimum visible fraction of an object (objects)"),
                NUMBER_DOUBLE,
                defaultValue=DEFAULT_MIN_VISIBLE_FRACTION,
            ),
            "MODE objects: an object cut by a chip edge is annotated in that chip (clipped to "
            "it) when at least this share (0..1) of its area lies inside the chip; objects "
            "mostly outside are left out of the chip. 1 keeps only whole objects.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.VAL_FRACTION,
                self.tr("Validation fraction"),
                NUMBER_DOUBLE,
                defaultValue=0.2,
            ),
            "Share of split blocks (0..1) whose chips go to validation.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TEST_FRACTION,
                self.tr("Test fraction"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
            ),
            "Share of split blocks (0..1) whose chips go to test; VAL_FRACTION + TEST_FRACTION "
            "must be below 1.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SPLIT_BLOCK,
                self.tr("Split block size (pixels, 0: 8 chips)"),
                NUMBER_INTEGER,
                defaultValue=0,
            ),
            f"Side of the square blocks that are assigned to splits, in pixels; 0 means "
            f"{DEFAULT_BLOCK_CHIPS} x CHIP_SIZE. Chips touching blocks of different splits are "
            "dropped, so larger blocks lose fewer chips but give coarser fractions.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), NUMBER_INTEGER, defaultValue=42),
            "Seed of the block split and of the empty-chip sampling; the same seed gives the same chips.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.KEEP_EMPTY,
                self.tr("Share of empty chips to keep"),
                NUMBER_DOUBLE,
                defaultValue=1.0,
            ),
            "Chips without any foreground class pixel are kept with this probability (0..1; 1 "
            "keeps all), drawn per chip from the seed.",
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT, self.tr("Output folder")),
            "A new (or empty) folder for the dataset; an existing non-empty folder is refused. "
            "See the layout in the algorithm help.",
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(self.INDEX, self.tr("Chip index"), SOURCE_VECTOR_POLYGON)
        )
        self.addOutput(QgsProcessingOutputString(self.CHIP_COUNTS, self.tr("Chip counts (JSON)")))
        self.addOutput(
            QgsProcessingOutputString(self.STATISTICS, self.tr("Class statistics per split (JSON)"))
        )
        self.addOutput(
            QgsProcessingOutputString(
                self.OBJECT_COUNTS, self.tr("Objects per split and class (JSON; MODE objects)")
            )
        )

    def _settings(
        self, parameters: dict[str, Any], context: QgsProcessingContext, grid: RasterGrid
    ) -> ChipExportSettings:
        chip_size = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        block = self.parameterAsInt(parameters, self.SPLIT_BLOCK, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        plan = ChipPlan(grid.width, grid.height, chip_size, stride if stride != 0 else chip_size)
        split = SplitSettings(
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            test_fraction=self.parameterAsDouble(parameters, self.TEST_FRACTION, context),
            block_size=block if block != 0 else DEFAULT_BLOCK_CHIPS * chip_size,
            seed=seed,
        )
        rules = ChipRules(
            mode=ChipMode(self.parameterAsEnum(parameters, self.MODE, context)),
            background_value=None,  # known once the mask is
            min_cover=self.parameterAsDouble(parameters, self.MIN_COVER, context),
            keep_empty=self.parameterAsDouble(parameters, self.KEEP_EMPTY, context),
            seed=seed,
        )
        return ChipExportSettings(plan, split, rules)

    def _object_settings(
        self, parameters: dict[str, Any], context: QgsProcessingContext, source: LabelSource
    ) -> ObjectSettings | None:
        """The object settings of MODE objects (None in the other modes)."""
        if not ChipMode(self.parameterAsEnum(parameters, self.MODE, context)).writes_objects:
            return None
        if source.mask is not None:
            raise RsdlError(
                "MODE objects needs vector LABELS (each feature is one object); a label mask "
                "raster (MASK) holds no objects."
            )
        return ObjectSettings(
            ObjectFormat(self.parameterAsEnum(parameters, self.OBJECT_FORMAT, context)),
            self.parameterAsDouble(parameters, self.MIN_VISIBLE_FRACTION, context),
        )

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        image_layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if image_layer is None:
            raise RsdlError("INPUT: choose the image raster to cut into chips.")
        source = LabelParameters.read_source(
            self,
            parameters,
            context,
            self.MASK,
            self.LABELS,
            missing="Give the labels: a label mask raster (MASK) or vector label layers (LABELS).",
            both="Give either a label mask raster (MASK) or vector label layers (LABELS), not both.",
        )
        object_settings = self._object_settings(parameters, context, source)
        grid = grid_from_raster_layer(image_layer)
        image = open_gdal(image_layer)
        settings = self._settings(parameters, context, grid)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        feedback.pushInfo(settings.plan_message())

        steps = QgsProcessingMultiStepFeedback(source.step_count, feedback)
        transform = context.transformContext()
        with atomic_folder(output) as folder:
            # The temporary mask lives in the temporary output folder: gone with it on failure.
            with label_mask(source, image_layer, grid, image, folder, transform, steps, GRID_HINT) as mask:
                objects = None
                if object_settings is not None:
                    objects = open_object_chips(
                        folder, object_settings, source, grid, image.RasterCount, transform, steps
                    )
                cutter = cut_chips(folder, settings, image, mask, grid, steps, objects)
            statistics = write_chip_dataset(folder, cutter, image_layer, image, source, feedback)
            raise_if_cancelled(feedback)  # a cancel after the last chip still leaves no folder

        return {
            self.OUTPUT: output,
            self.INDEX: str(Path(output) / INDEX_FILE),
            self.CHIP_COUNTS: json.dumps(cutter.tally.counts()),
            self.STATISTICS: json.dumps(statistics),
            self.OBJECT_COUNTS: json.dumps(objects.counts() if objects is not None else {}),
        }
