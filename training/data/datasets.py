"""Torch datasets that read one sample at a time from disk (nothing is preloaded).

Every sample is normalised by the spec's own ``ModelSpec.normalize`` and returned as a dict:

- segmentation: ``image`` float32 (C, H, W), ``mask`` int64 (H, W) of channel indices with
  ``IGNORE_INDEX`` (-100) where the label is unknown;
- classification: ``image`` float32 (C, H, W), ``label`` int64 scalar.

Raster files are opened lazily in each worker process (rasterio handles must not cross a fork)
and kept open for the worker's life.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec

from .classes import ClassTable
from .transforms import Augment


class RasterFiles:
    """Open rasterio datasets by path, per process; picklable (handles are not pickled)."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def get(self, path: str) -> Any:
        if self._pid != os.getpid():  # forked worker: the parent's handles are not ours
            self.__init__()
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = rasterio.open(path)
        return handle

    def read(self, path: str, bands: Sequence[int] | None = None, window: Window | None = None) -> np.ndarray:
        """(C, H, W) pixels of ``bands`` (1-based; all when None)."""
        source = self.get(path)
        indexes = list(bands) if bands else list(range(1, source.count + 1))
        pixels = source.read(indexes, window=window)
        return np.nan_to_num(pixels, copy=False) if pixels.dtype.kind == "f" else pixels


class WindowReader:
    """Chips cut from rasters and their cached masks: item (raster number, row, col)."""

    def __init__(
        self, rasters: Sequence[str], masks: Sequence[str], chip_size: int, bands: Sequence[int] | None
    ):
        self.rasters, self.masks = list(rasters), list(masks)
        self.chip_size = chip_size
        self.bands = list(bands) if bands else None
        self.files = RasterFiles()

    def __call__(self, item: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        number, row, col = item
        window = Window(col, row, self.chip_size, self.chip_size)
        image = self.files.read(self.rasters[number], self.bands, window)
        mask = self.files.read(self.masks[number], None, window)[0]
        return image, mask


def read_raster_file(path: str | Path, bands: Sequence[int] | None = None) -> np.ndarray:
    """(C, H, W) pixels of a small raster file, opened and closed at once.

    Chip folders hold thousands of files: holding a handle on each would exhaust file handles.
    """
    with rasterio.open(path) as source:
        indexes = list(bands) if bands else list(range(1, source.count + 1))
        pixels = source.read(indexes)
    return np.nan_to_num(pixels, copy=False) if pixels.dtype.kind == "f" else pixels


class ChipFileReader:
    """Image/mask chip files of an rsdl chip folder: item (image path, mask path)."""

    def __init__(self, bands: Sequence[int] | None):
        self.bands = list(bands) if bands else None

    def __call__(self, item: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = item
        return read_raster_file(image_path, self.bands), read_raster_file(mask_path)[0]


class SegmentationDataset(Dataset):
    """(image, mask) samples from any reader; masks are mapped to channel indices."""

    def __init__(
        self,
        items: Sequence[Any],
        reader: Callable[[Any], tuple[np.ndarray, np.ndarray]],
        spec: ModelSpec,
        classes: ClassTable,
        augment: Augment | None = None,
    ):
        self.items, self.reader, self.spec, self.classes, self.augment = (
            list(items),
            reader,
            spec,
            classes,
            augment,
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self.reader(self.items[index])
        sample = {
            "image": torch.from_numpy(self.spec.normalize(image)),
            "mask": torch.from_numpy(self.classes.targets(mask)),
        }
        return self.augment(sample) if self.augment is not None else sample


class ClassificationDataset(Dataset):
    """(image, label) samples: items are (source, channel index) read by ``reader(source)``."""

    def __init__(
        self,
        items: Sequence[tuple[Any, int]],
        reader: Callable[[Any], np.ndarray],
        spec: ModelSpec,
        augment: Augment | None = None,
    ):
        self.items, self.reader, self.spec, self.augment = list(items), reader, spec, augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        source, label = self.items[index]
        sample = {
            "image": torch.from_numpy(self.spec.normalize(self.reader(source))),
            "label": torch.tensor(label, dtype=torch.int64),
        }
        return self.augment(sample) if self.augment is not None else sample
