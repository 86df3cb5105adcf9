"""RasterObjectsDataModule: object chips cut on the fly from rasters and vector objects.

Rasters, label rules, label masks, the chip plan and the spatial split are the segmentation
module's (``RasterVectorDataModule``, held inside and sharing its cache entry): the same rasters
and settings give the same chips in the same splits. On top of that, once per set of inputs and
settings (cached on disk beside the masks):
1. every label feature becomes one object in each raster's pixels (polygons with their holes; a
   box layer's rectangles are polygons too), by the plugin's label rules (class values, names,
   reprojection, repair, buffers);
2. each planned chip gets its objects by core/datasets/object_chips.py's rule, the one
   rsdl:exportchips applies: clipped to the chip, kept when at least ``min_visible_fraction`` of
   the object's area is inside, box = the clipped polygon's bounding box. A chip without
   objects is "empty" for ``keep_empty``; chips that are nodata everywhere are skipped.
Training then reads each chip's window and burns its objects' masks (instance task) on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.datasets.chips import ChipMode, ChipRules, ChipWindow
from rsdl_qgis_plugin.core.datasets.object_chips import (
    DEFAULT_MIN_VISIBLE_FRACTION,
    ChipObject,
    ChipObjects,
    LabelObject,
    ObjectIndex,
    ObjectPart,
    ObjectSettings,
    map_to_pixel,
)

from .base import SPLITS, nodata_validity, resolution_cm
from .cache import cache_key, read_json, write_json
from .chip_index import RasterInfo, build_chip_index
from .classes import ClassTable
from .datasets import RasterFiles
from .labels import LabelReport, burn_shapes
from .objects import ObjectChip, ObjectDataModule
from .raster_vector import RasterVectorDataModule


def geotransform(raster: RasterInfo) -> tuple[float, ...]:
    """GDAL's geotransform (x0, dx, 0, y0, 0, dy) of a raster's affine coefficients."""
    a, b, c, d, e, f = raster.transform
    return c, a, b, f, d, e


POLYGONAL = ("Polygon", "MultiPolygon")  # what burn_shapes gives for areas (repaired, or buffered)


def object_parts(geometry: BaseGeometry, transform: Sequence[float]) -> list[ObjectPart]:
    """The polygons of a (multi)polygon in map coordinates as parts in pixel coordinates."""
    parts = []
    for polygon in shapely.get_parts(geometry):
        if polygon.geom_type == "Polygon" and not polygon.is_empty:
            exterior = map_to_pixel(transform, np.asarray(polygon.exterior.coords)[:, :2])
            holes = tuple(map_to_pixel(transform, np.asarray(r.coords)[:, :2]) for r in polygon.interiors)
            parts.append(ObjectPart(exterior, holes))
    return parts


def object_record(obj: ChipObject) -> dict[str, Any]:
    """A chip object as objects.py's record (full precision: boxes reproduce the source)."""
    return {
        "value": obj.class_value,
        "box": [float(v) for v in obj.box],
        "polygons": [ring.ravel().tolist() for ring in obj.polygons],
        "visible": obj.visible_fraction,
    }


class ImageWindowReader:
    """Chip windows of rasters: item (raster number, row, col) -> (C, H, W) pixels."""

    def __init__(self, rasters: Sequence[str], chip_size: int, bands: Sequence[int] | None):
        self.rasters, self.chip_size = list(rasters), chip_size
        self.bands = list(bands) if bands else None
        self.files = RasterFiles()

    def __call__(self, item: Sequence[int]) -> np.ndarray:
        number, row, col = item
        return self.files.read(
            self.rasters[number], self.bands, Window(col, row, self.chip_size, self.chip_size)
        )


class RasterObjectsDataModule(ObjectDataModule):
    """Detection / instance chips cut from rasters, with objects from vector labels.

    Args:
        raster: a raster, or a list of rasters / glob patterns in one CRS with the same bands.
        labels: one or more vector sources (GeoJSON, GeoPackage; ``file.gpkg|layername=x``):
            polygons (instance masks and boxes) or a layer of box rectangles.
        task: "detection" (boxes) or "instance" (boxes and masks).
        field, name_field, burn_value, background_value, ignore_value, unlabelled, buffer_width,
            buffer_field: the label rules of rsdl:rasterizelabels (LabelOptions): which class each
            feature is (e.g. ``field: label`` for text classes), and for ``unlabelled: ignore``
            (sparse labels) chips without any label are skipped.
        min_visible_fraction: an object cut by a chip edge is kept in the chip when at least this
            share of its area is inside (rsdl:exportchips's MIN_VISIBLE_FRACTION).
        bands, chip_size, stride, val_fraction, test_fraction, block_size, seed, folds, fold,
            keep_empty (share of chips without objects to keep): as RasterVectorDataModule.
        Other arguments as ChipsDataModule.
    """

    def __init__(
        self,
        raster: str | list[str],
        labels: str | list[str],
        task: str = "detection",
        field: str | None = None,
        name_field: str | None = None,
        burn_value: int | None = None,
        background_value: int = 0,
        ignore_value: int = 255,
        unlabelled: str = "background",
        buffer_width: float = 0.0,
        buffer_field: str | None = None,
        min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION,
        bands: list[int] | None = None,
        chip_size: int = 256,
        stride: int | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        block_size: int | None = None,
        seed: int = 42,
        folds: int = 0,
        fold: int = 0,
        keep_empty: float = 1.0,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: bool = True,
        jitter: float = 0.1,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        max_pixel_value: float | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            task, batch_size, num_workers, augment, jitter, mean, std, max_pixel_value, cache_dir
        )
        self.save_plain_hyperparameters()
        self.min_visible_fraction = ObjectSettings(
            min_visible_fraction=min_visible_fraction
        ).min_visible_fraction
        # The segmentation module holds the rasters, label rules, masks and split settings.
        self.pixels = RasterVectorDataModule(
            raster,
            labels,
            field=field,
            name_field=name_field,
            burn_value=burn_value,
            background_value=background_value,
            ignore_value=ignore_value,
            unlabelled=unlabelled,
            buffer_width=buffer_width,
            buffer_field=buffer_field,
            bands=bands,
            chip_size=chip_size,
            stride=stride,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            block_size=block_size,
            seed=seed,
            folds=folds,
            fold=fold,
            keep_empty=keep_empty,
            augment=False,
            cache_dir=str(self.cache_dir),
        )
        self.rasters: list[RasterInfo] = self.pixels.rasters
        self.bands: list[int] = self.pixels.bands
        self.chip_size: int = self.pixels.chip_size
        self.options = self.pixels.options
        self.index: dict[str, Any] | None = None

    # -- classes ------------------------------------------------------------------------------

    @cached_property
    def class_table(self) -> ClassTable:
        """The object classes: the label classes without the background."""
        table = self.pixels.class_table
        background = None if self.options.unlabelled == "ignore" else self.options.background_value
        rows = [
            {"value": value, "name": name, "color": color}
            for value, name, color in zip(table.values, table.names, table.colors)
            if value != background
        ]
        return ClassTable.from_entries(rows)

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    # -- the cached work ----------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        """The objects' chip index, beside the masks it was made from."""
        pixels = self.pixels
        key = cache_key(
            pixels.mask_key,
            "objects",
            self.chip_size,
            pixels.stride,
            pixels.split_settings.__dict__,
            pixels.folds,
            pixels.fold,
            pixels.keep_empty,
            self.min_visible_fraction,
        )
        return pixels.entry_dir / f"objects-{key}.json"

    def _label_objects(self, report: LabelReport) -> tuple[list[list[LabelObject]], int]:
        """Each raster's objects in its pixels, and how many features have no area (lines, points)."""
        shapes_by_crs: dict[str, list] = {}
        per_raster = []
        for raster in self.rasters:
            if raster.crs_wkt not in shapes_by_crs:
                shapes = burn_shapes(self.pixels._layers, self.options, CRS.from_wkt(raster.crs_wkt), report)
                shapes_by_crs[raster.crs_wkt] = [(g, v) for g, v in shapes if g.geom_type in POLYGONAL]
                without_area = len(shapes) - len(shapes_by_crs[raster.crs_wkt])
            transform = geotransform(raster)
            per_raster.append(
                [
                    LabelObject(int(v), tuple(object_parts(g, transform)))
                    for g, v in shapes_by_crs[raster.crs_wkt]
                ]
            )
        return per_raster, without_area

    def _index_document(self) -> dict[str, Any]:
        document = read_json(self.index_path)
        if document is not None:
            return document
        pixels = self.pixels
        report = LabelReport()
        objects, without_area = self._label_objects(report)
        indexes = [ObjectIndex(found, self.min_visible_fraction) for found in objects]
        in_chips: dict[tuple[int, int, int], ChipObjects] = {}

        def count_objects(number: int, window: ChipWindow) -> int:
            in_chip = in_chips[(number, window.row, window.col)] = indexes[number].in_chip(window)
            return len(in_chip.objects)

        background = None if self.options.unlabelled == "ignore" else self.options.background_value
        rules = ChipRules(
            ChipMode.OBJECTS, background, keep_empty=pixels.keep_empty, seed=pixels.split_settings.seed
        )
        document = build_chip_index(
            self.rasters,
            [pixels.mask_path(n) for n in range(len(self.rasters))],
            self.chip_size,
            pixels.stride,
            pixels.split_settings,
            rules,
            self.options.ignore_value,
            pixels.folds,
            pixels.fold,
            count_objects,
        )
        written = {split: [in_chips[tuple(chip)] for chip in document["chips"][split]] for split in SPLITS}
        document["objects"] = {
            split: [[object_record(obj) for obj in chip.objects] for chip in chips]
            for split, chips in written.items()
        }
        document["object_report"] = {
            "label_objects": sum(len(found) for found in objects),
            "without_area": without_area,
            "dropped_mostly_outside": sum(chip.dropped for chips in written.values() for chip in chips),
        }
        write_json(self.index_path, document)
        return document

    def _reader(self) -> ImageWindowReader:
        return ImageWindowReader([r.path for r in self.rasters], self.chip_size, self.bands)

    def _items(self, split: str) -> list[ObjectChip]:
        if self.index is None:
            self._spec = self._build_spec()
        chips = []
        for (number, row, col), records in zip(self.index["chips"][split], self.index["objects"][split]):
            window = ChipWindow(row, col, self.chip_size)
            chip_id = f"{Path(self.rasters[number].path).stem}_{window.chip_id}"
            chips.append(ObjectChip((number, row, col), chip_id, tuple(records)))
        return chips

    def _statistics(self, max_value: float) -> tuple[list[float], list[float]]:
        path = self.index_path.with_name(
            f"bands-{cache_key(self.index_path.name, self.bands, max_value)}.json"
        )
        reader = self._reader()
        valid = nodata_validity([self.rasters[0].nodata[b - 1] for b in self.bands])
        chips = self._sample(self.index["chips"]["train"])
        images = ((pixels, valid(pixels)) for pixels in (reader(chip) for chip in chips))
        return self._cached_statistics(path, len(self.bands), max_value, images)

    def _build_spec(self) -> ModelSpec:
        pixels = self.pixels
        self.labels_document = pixels._labels_document()
        self.index = self._index_document()
        counts = {
            split: {
                self.class_table.names[self.class_table.index_of_value(int(v))]: n
                for v, n in sorted(self._class_counts(split).items())
            }
            for split in SPLITS
        }
        return self._make_spec(
            bands=self.bands,
            dtype=self.rasters[0].dtype,
            tile_size=self.chip_size,
            statistics=self._statistics,
            resolution=resolution_cm(self.rasters[0].crs_wkt, min(min(r.pixel_size) for r in self.rasters)),
            ignore_index=None,
            training={
                "data": {
                    "source": "raster + vector objects",
                    "rasters": pixels.raster_sources,
                    "raster_count": len(self.rasters),
                    "labels": pixels.label_sources,
                    "label_rules": self.options.as_dict(),
                    "label_report": self.labels_document["report"],
                    "min_visible_fraction": self.min_visible_fraction,
                    "objects": {**self.index["object_report"], "per_split": counts},
                },
                "split": {
                    **pixels.split_settings.__dict__,
                    "folds": pixels.folds,
                    "fold": pixels.fold,
                    "blocks": self.index["blocks"],
                    "chips": self.index["counts"],
                },
            },
        )

    def _class_counts(self, split: str) -> dict[int, int]:
        counts: dict[int, int] = {}
        for records in self.index["objects"][split]:
            for record in records:
                counts[int(record["value"])] = counts.get(int(record["value"]), 0) + 1
        return counts
