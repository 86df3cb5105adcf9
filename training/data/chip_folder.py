"""ChipsDataModule: a chip folder written by rsdl:exportchips (layout: core/datasets/chip_folder.py).

The folder's own splits are used as they are: exportchips already split by blocks of ground.
Segmentation reads ``<split>/images`` + ``<split>/masks``; classification reads
``classification/<split>/<class folder>``. Class pixel counts come from dataset.json, so class
weights cost nothing; band mean/std (when not given) are measured once on training chips and
cached.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.datasets.chip_folder import (
    CLASSIFICATION_FOLDER,
    IMAGES_FOLDER,
    MASKS_FOLDER,
    load_dataset_document,
)
from rsdl_qgis_plugin.core.errors import RsdlError

from .base import RsdlDataModule, nodata_validity, resolution_cm
from .cache import cache_key, file_fingerprint
from .classes import ClassTable
from .datasets import ChipFileReader, read_raster_file


class ChipsDataModule(RsdlDataModule):
    """Chips exported by rsdl:exportchips, for segmentation or classification.

    Args:
        root: the chip folder (holds dataset.json).
        task: "segmentation" (image/mask pairs) or "classification" (class folders).
        bands: 1-based bands of the chips to use, in order (default: all).
        batch_size, num_workers: DataLoader settings.
        augment, jitter: flips, 90° rotations and brightness/contrast jitter on training samples.
        mean, std, max_pixel_value: normalisation ((x / max_pixel_value - mean) / std); mean/std
            default to values measured on the training chips, max_pixel_value to 255 for 8-bit
            data and the type's maximum otherwise.
        cache_dir: where measured statistics are kept (default ~/.cache/rsdl/training).
        train_fraction: share of the training chips used (default 1: all), drawn with a fixed seed so
            every run gets the same ones; for label-scarce experiments (see ``training_subset``).
    """

    def __init__(
        self,
        root: str,
        task: str = "segmentation",
        bands: list[int] | None = None,
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
            task,
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
        self.root = Path(root)
        self.document = load_dataset_document(self.root)
        mode = self.document.get("mode")
        wanted = "classification" if task == "classification" else "segmentation"
        if mode not in (wanted, "both"):
            raise RsdlError(
                f"The chip folder '{root}' was exported in mode '{mode}'; {task} needs chips exported "
                f"in mode '{wanted}' or 'both'."
            )
        image = self.document["image"]
        self.bands = list(bands) if bands else list(range(1, int(image["band_count"]) + 1))
        if max(self.bands) > int(image["band_count"]) or min(self.bands) < 1:
            raise RsdlError(f"bands {self.bands} do not exist in chips of {image['band_count']} bands.")

    @cached_property
    def class_table(self) -> ClassTable:
        return ClassTable.from_entries(self.document["classes"])

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def _segmentation_items(self, split: str) -> list[tuple[str, str]]:
        images = sorted((self.root / split / IMAGES_FOLDER).glob("*.tif"))
        return [(str(p), str(self.root / split / MASKS_FOLDER / p.name)) for p in images]

    def _classification_items(self, split: str) -> list[tuple[str, int]]:
        items = []
        for index, row in enumerate(sorted(self.document["classes"], key=lambda r: int(r["value"]))):
            folder = self.root / CLASSIFICATION_FOLDER / split / str(row.get("folder", row["name"]))
            items += [(str(p), index) for p in sorted(folder.glob("*.tif"))]
        return items

    def _items(self, split: str) -> list[Any]:
        if self.task == "segmentation":
            return self._segmentation_items(split)
        return self._classification_items(split)

    def train_counts(self) -> dict[int, int]:
        if self.task == "classification":
            folders = {str(r.get("folder", r["name"])): int(r["value"]) for r in self.document["classes"]}
            per_folder = self.document.get("classification_counts", {}).get("train", {})
            return {folders[f]: int(n) for f, n in per_folder.items() if f in folders}
        rows = self.document.get("statistics", {}).get("train", {}).get("classes", [])
        return {int(r["value"]): int(r["pixels"]) for r in rows}

    def _statistics(self, max_value: float) -> tuple[list[float], list[float]]:
        key = cache_key(
            "chips-bands", file_fingerprint(self.root / "dataset.json"), self.task, self.bands, max_value
        )
        image = self.document["image"]
        valid = nodata_validity([image["nodata"][b - 1] for b in self.bands])
        sources = [item[0] for item in self._sample(self._items("train"))]
        images = ((pixels, valid(pixels)) for pixels in (read_raster_file(s, self.bands) for s in sources))
        return self._cached_statistics(
            self.cache_dir / f"chips-{key}" / "bands.json", len(self.bands), max_value, images
        )

    def _reader(self) -> Callable[[Any], Any]:
        if self.task == "segmentation":
            return ChipFileReader(self.bands)
        return partial(read_raster_file, bands=self.bands)

    def _build_spec(self) -> ModelSpec:
        image = self.document["image"]
        return self._make_spec(
            bands=self.bands,
            dtype=image["dtype"],
            tile_size=int(self.document["chip_size"]),
            statistics=self._statistics,
            resolution=resolution_cm(image.get("crs_wkt", ""), float(image["geotransform"][1])),
            ignore_index=int(self.document["ignore_value"]),
            training={
                "data": {
                    "source": "rsdl chips",
                    "root": str(self.root.resolve()),
                    "image": image.get("path"),
                    "labels": self.document.get("labels"),
                },
                "split": {**self.document.get("split", {}), "chips": self.document.get("counts", {})},
            },
        )
