"""RasterVectorDataModule: train on rasters and vector labels directly, no chip export needed.

Once per set of inputs (cached on disk, see ``cache.py``):
1. the labels are read (GeoJSON/GeoPackage, ``vectors.py``), given class values by the plugin's
   label rules, reprojected and repaired (``labels.py``) and burnt into one mask per raster
   (``rasterize.py``);
2. chip footprints are planned, split by blocks of ground and counted (``chip_index.py``);
3. band mean/std are measured on training chips (unless given).
Training then reads each chip's window from the raster and its mask, nothing more.
"""

from __future__ import annotations

import glob
from functools import cached_property
from pathlib import Path
from typing import Any

from rasterio.crs import CRS

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.datasets.chips import DEFAULT_BLOCK_CHIPS, ChipMode, ChipRules, SplitSettings
from rsdl_qgis_plugin.core.errors import RsdlError

from .base import RsdlDataModule, nodata_validity, resolution_cm
from .cache import cache_key, file_fingerprint, fingerprints, read_json, write_json
from .chip_index import RasterInfo, build_chip_index
from .classes import ClassTable
from .datasets import WindowReader
from .labels import LabelOptions, LabelReport, burn_shapes, class_table_entries, label_classes
from .rasterize import write_label_mask
from .vectors import VectorLayer, read_layers, split_source

LABELS_FILE = "labels.json"  # written last: its presence marks a complete mask entry


def expand_paths(patterns: str | list[str]) -> list[str]:
    """Paths and glob patterns, in the order given (each pattern's matches sorted)."""
    paths: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else list(patterns):
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise RsdlError(f"No raster matches '{pattern}'.")
        paths += matches
    return paths


class RasterVectorDataModule(RsdlDataModule):
    """Segmentation chips cut on the fly from rasters, with masks burnt from vector labels.

    Args:
        raster: a raster (a VRT works), or a list of rasters / glob patterns in one CRS with the
            same bands (e.g. tiles at several zoom levels).
        labels: one or more vector sources (GeoJSON, GeoPackage; ``file.gpkg|layername=x``).
        field, name_field, burn_value, background_value, ignore_value, unlabelled, overlap,
            all_touched, buffer_width, buffer_field: the label rules of rsdl:rasterizelabels (see
            LabelOptions). Sparse samples: ``unlabelled: ignore``.
        bands: 1-based raster bands to use, in order (default: all).
        chip_size, stride: chip side and step in pixels (stride defaults to chip_size).
        val_fraction, test_fraction, block_size, seed: spatial split by blocks (block_size in
            pixels of the finest raster; default 8 chips), as rsdl:exportchips.
        folds, fold: k-fold cross-validation over the blocks instead of fractions (folds > 1).
        keep_empty: share of chips without any foreground pixel to keep (1: all).
        cache_dir: where masks, chip index and statistics are cached.
        train_fraction: share of the training chips used (default 1: all), the same in every run.
        Other arguments as ChipsDataModule.
    """

    def __init__(
        self,
        raster: str | list[str],
        labels: str | list[str],
        field: str | None = None,
        name_field: str | None = None,
        burn_value: int | None = None,
        background_value: int = 0,
        ignore_value: int = 255,
        unlabelled: str = "background",
        overlap: str = "last",
        all_touched: bool = False,
        buffer_width: float = 0.0,
        buffer_field: str | None = None,
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
        train_fraction: float = 1.0,
    ) -> None:
        super().__init__(
            "segmentation",
            batch_size,
            num_workers,
            augment,
            jitter,
            mean,
            std,
            max_pixel_value,
            cache_dir,
            train_fraction=train_fraction,
        )
        self.save_plain_hyperparameters()
        self.label_sources = [labels] if isinstance(labels, str) else list(labels)
        self.options = LabelOptions(
            field,
            name_field,
            burn_value,
            background_value,
            ignore_value,
            unlabelled,
            overlap,
            all_touched,
            buffer_width,
            buffer_field,
        )
        self.raster_sources = [raster] if isinstance(raster, str) else list(raster)
        self.rasters = [RasterInfo.read(path) for path in expand_paths(self.raster_sources)]
        self._check_rasters()
        first = self.rasters[0]
        self.bands = list(bands) if bands else list(range(1, first.count + 1))
        if min(self.bands) < 1 or max(self.bands) > first.count:
            raise RsdlError(f"bands {self.bands} do not exist in rasters of {first.count} bands.")
        self.chip_size, self.stride = chip_size, stride or chip_size
        self.split_settings = SplitSettings(
            val_fraction, test_fraction, block_size or DEFAULT_BLOCK_CHIPS * chip_size, seed
        )
        self.folds, self.fold, self.keep_empty = folds, fold, keep_empty
        self.index: dict[str, Any] | None = None

    def _check_rasters(self) -> None:
        first = self.rasters[0]
        crs = CRS.from_wkt(first.crs_wkt)
        for raster in self.rasters[1:]:
            if CRS.from_wkt(raster.crs_wkt) != crs:
                raise RsdlError(
                    f"Rasters '{first.path}' and '{raster.path}' have different CRSs; warp them to "
                    "one CRS (or build a VRT) first."
                )
            if (raster.count, raster.dtype) != (first.count, first.dtype):
                raise RsdlError(
                    f"Rasters '{first.path}' ({first.count} x {first.dtype}) and '{raster.path}' "
                    f"({raster.count} x {raster.dtype}) differ in bands or data type."
                )

    # -- cache keys ---------------------------------------------------------------------------

    @cached_property
    def mask_key(self) -> str:
        """Inputs and label rules: everything the masks depend on."""
        label_files = []
        for source in self.label_sources:
            path, layer = split_source(source)
            label_files.append([file_fingerprint(path), layer])
        rasters = [fingerprints(r.files or [r.path]) for r in self.rasters]
        return cache_key("raster-vector-masks", rasters, label_files, self.options.as_dict())

    @property
    def entry_dir(self) -> Path:
        return self.cache_dir / f"rv-{self.mask_key}"

    @property
    def index_path(self) -> Path:
        key = cache_key(
            self.mask_key,
            self.chip_size,
            self.stride,
            self.split_settings.__dict__,
            self.folds,
            self.fold,
            self.keep_empty,
        )
        return self.entry_dir / f"index-{key}.json"

    def mask_path(self, number: int) -> Path:
        return self.entry_dir / "masks" / f"mask_{number:05d}.tif"

    # -- classes ------------------------------------------------------------------------------

    @cached_property
    def _layers(self) -> list[VectorLayer]:
        return [layer for source in self.label_sources for layer in read_layers(source)]

    @cached_property
    def class_table(self) -> ClassTable:
        cached = read_json(self.entry_dir / LABELS_FILE)
        entries = cached["classes"] if cached else class_table_entries(self._layers, self.options)
        return ClassTable.from_entries(entries)

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    # -- the cached work ----------------------------------------------------------------------

    def _labels_document(self) -> dict[str, Any]:
        """Masks and label report, burnt once per mask key."""
        path = self.entry_dir / LABELS_FILE
        document = read_json(path)
        if document is not None:
            return document
        classes = label_classes(self._layers, self.options)
        report = LabelReport()
        shapes_by_crs: dict[str, list] = {}
        statistics = []
        for number, raster in enumerate(self.rasters):
            if raster.crs_wkt not in shapes_by_crs:
                shapes_by_crs[raster.crs_wkt] = burn_shapes(
                    self._layers, self.options, CRS.from_wkt(raster.crs_wkt), report
                )
            counts = write_label_mask(
                raster.path,
                shapes_by_crs[raster.crs_wkt],
                classes,
                self.options.mask_values,
                self.mask_path(number),
                self.options.all_touched,
            )
            statistics.append(
                {"counts": {str(k): v for k, v in counts.counts.items()}, "ignored": counts.ignored}
            )
        document = {
            "classes": class_table_entries(self._layers, self.options),
            "rasters": [r.path for r in self.rasters],
            "labels": self.label_sources,
            "options": self.options.as_dict(),
            "report": report.__dict__,
            "statistics": statistics,
        }
        write_json(path, document)
        return document

    def _index_document(self) -> dict[str, Any]:
        document = read_json(self.index_path)
        if document is None:
            rules = ChipRules(
                ChipMode.SEGMENTATION,
                None if self.options.unlabelled == "ignore" else self.options.background_value,
                keep_empty=self.keep_empty,
                seed=self.split_settings.seed,
            )
            document = build_chip_index(
                self.rasters,
                [self.mask_path(n) for n in range(len(self.rasters))],
                self.chip_size,
                self.stride,
                self.split_settings,
                rules,
                self.options.ignore_value,
                self.folds,
                self.fold,
            )
            write_json(self.index_path, document)
        return document

    def _reader(self) -> WindowReader:
        masks = [str(self.mask_path(n)) for n in range(len(self.rasters))]
        return WindowReader([r.path for r in self.rasters], masks, self.chip_size, self.bands)

    def _statistics(self, max_value: float) -> tuple[list[float], list[float]]:
        path = self.index_path.with_name(
            f"bands-{cache_key(self.index_path.name, self.bands, max_value)}.json"
        )
        reader = self._reader()
        first = self.rasters[0]
        valid = nodata_validity([first.nodata[b - 1] for b in self.bands])
        chips = self._sample(self.index["chips"]["train"])
        images = ((pixels, valid(pixels)) for pixels in (reader(chip)[0] for chip in chips))
        return self._cached_statistics(path, len(self.bands), max_value, images)

    def _build_spec(self) -> ModelSpec:
        self.labels_document = self._labels_document()
        self.index = self._index_document()
        first = self.rasters[0]
        split = {
            **self.split_settings.__dict__,
            "folds": self.folds,
            "fold": self.fold,
            "blocks": self.index["blocks"],
            "chips": self.index["counts"],
        }
        return self._make_spec(
            bands=self.bands,
            dtype=first.dtype,
            tile_size=self.chip_size,
            statistics=self._statistics,
            resolution=resolution_cm(first.crs_wkt, min(min(r.pixel_size) for r in self.rasters)),
            ignore_index=self.options.ignore_value,
            training={
                "data": {
                    "source": "raster + vector labels",
                    "rasters": self.raster_sources,
                    "raster_count": len(self.rasters),
                    "labels": self.label_sources,
                    "label_rules": self.options.as_dict(),
                    "label_report": self.labels_document["report"],
                },
                "split": split,
            },
        )

    def _items(self, split: str) -> list[tuple[int, int, int]]:
        return [tuple(chip) for chip in self.index["chips"][split]]

    def train_counts(self) -> dict[int, int]:
        if self.index is None:
            self._spec = self._build_spec()
        counts = self.index["statistics"].get("train", {}).get("counts", {})
        return {int(k): int(v) for k, v in counts.items()}
