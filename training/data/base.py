"""What the three data modules share: loaders, the normalisation spec and class weights.

A data module knows its classes and input bands when it is built (cheap header reads, so the
CLI can size the net from them), does its expensive work in ``prepare_data`` (once per node,
cached on disk) and opens datasets in ``setup``. Batches are dicts (see ``datasets.py``).
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.windows import Window
from torch.utils.data import DataLoader, Dataset

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.raster.nodata import nodata_pixels, valid_pixels

from .cache import default_cache_dir, read_json, write_json
from .classes import ClassTable
from .datasets import ClassificationDataset, SegmentationDataset
from .normalization import BandStatistics, default_max_pixel_value, per_band
from .transforms import Augment

TASKS = ("segmentation", "classification")
STATISTICS_SAMPLES = 256  # training images measured for mean/std: enough for stable values
SPLITS = ("train", "val", "test")
SUBSET_SEED = 0  # train_fraction draws the same chips in every run
CLASS_PATH_KEY = "_class_path"  # LightningCLI's name for it, so both agree


def resolution_cm(crs_wkt: str, pixel_size: float) -> float | None:
    """Pixel size in centimetres when the CRS is in metres (the spec's ``resolution``), else None."""
    try:
        crs = CRS.from_wkt(crs_wkt)
    except Exception:  # an unreadable CRS only loses the resolution hint
        return None
    if crs.is_geographic or (crs.linear_units or "").lower() not in ("metre", "meter", "m"):
        return None
    return round(pixel_size * 100.0, 6)


def nodata_validity(nodata: Sequence[float | None]) -> Callable[[np.ndarray], np.ndarray]:
    """For (C, H, W) pixels of the bands read, whose nodata values are ``nodata``: where every
    band holds data (core/raster/nodata.py: a pixel is nodata when any band read is)."""
    values = list(nodata)

    def valid(pixels: np.ndarray) -> np.ndarray:
        return valid_pixels(pixels, values[: len(pixels)])

    return valid


def window_nodata(source: DatasetReader, window: Window, bands: Sequence[int] | None = None) -> np.ndarray:
    """(H, W): True where any of ``bands`` (default: all) of an open rasterio dataset is nodata in
    ``window``, by core/raster/nodata.py's rule: zero in its mask (nodata value, internal mask,
    alpha band) or, in a float band, not finite."""
    indexes = list(bands) if bands else list(source.indexes)
    masks = source.read_masks(indexes, window=window)
    floats = [np.dtype(source.dtypes[i - 1]).kind in "fc" for i in indexes]
    values = source.read(indexes, window=window) if any(floats) else None
    pixels = [values[k] if floats[k] else None for k in range(len(indexes))]
    return nodata_pixels(pixels, [None] * len(indexes), list(masks))


def training_subset(items: Sequence[Any], fraction: float) -> list[Any]:
    """``fraction`` of ``items`` (at least one), the same ones in every run and in their order.

    For label-scarce experiments (``train_fraction``): the chips are drawn with a fixed seed, so
    runs that differ in anything else train on the same chips. The normalisation and class
    weights stay those of the whole training split (class shares are not label content).
    """
    if fraction >= 1.0 or not items:
        return list(items)
    count = max(1, round(fraction * len(items)))
    picks = np.sort(np.random.default_rng(SUBSET_SEED).choice(len(items), size=count, replace=False))
    return [items[i] for i in picks]


class RsdlDataModule(pl.LightningDataModule, abc.ABC):
    """Base of the rsdl data modules.

    Subclasses provide ``_build_spec`` (all cached work, then the spec), ``_items(split)`` (the
    split's samples) and ``_reader()`` (what reads one sample's pixels). Object data modules
    (``objects.py``) change the tasks, the augmentation, the datasets, the model type and the batch
    collation.
    """

    tasks: tuple[str, ...] = TASKS
    augment_class: type = Augment  # the training split's augmentation (jitter: its brightness and contrast)

    def __init__(
        self,
        task: str = "segmentation",
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
        super().__init__()
        if task not in self.tasks:
            raise ValueError(f"task must be one of {self.tasks}, got {task!r}.")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must lie in (0, 1], got {train_fraction:g}.")
        self.train_fraction = train_fraction
        self.task = task
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = self.augment_class(brightness=jitter, contrast=jitter) if augment else None
        self.mean, self.std, self.max_pixel_value = mean, std, max_pixel_value
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.datasets: dict[str, Dataset] = {}
        self._spec: ModelSpec | None = None

    def save_plain_hyperparameters(self) -> None:
        """``save_hyperparameters`` of the calling ``__init__``, plus the class it belongs to.

        ``_class_path`` (set by LightningCLI as well) lets ``load_datamodule`` pick the class by
        name among rsdl's own, without importing what a file names.
        """
        self.save_hyperparameters(frame=inspect.currentframe().f_back)
        self.hparams.setdefault(CLASS_PATH_KEY, f"{type(self).__module__}.{type(self).__qualname__}")

    # -- what the net is sized from -----------------------------------------------------------

    @property
    @abc.abstractmethod
    def class_table(self) -> ClassTable: ...

    @property
    @abc.abstractmethod
    def in_channels(self) -> int: ...

    @property
    def num_classes(self) -> int:
        return len(self.class_table)

    # -- what training hands to the model spec ------------------------------------------------

    def model_spec(self) -> ModelSpec:
        """The data's part of the model spec (classes, bands, normalisation, tile, provenance)."""
        if self._spec is None:
            raise RuntimeError("The data module has no spec before setup(); call setup() first.")
        return self._spec

    @abc.abstractmethod
    def train_counts(self) -> dict[int, int]:
        """Training pixels (segmentation) or samples (classification) per class value."""

    def class_weights(self) -> list[float]:
        """Balanced class weights per output channel from the (cached) training statistics."""
        return self.class_table.weights(self.train_counts())

    def _make_spec(
        self,
        bands: Sequence[int],
        dtype: str,
        tile_size: int,
        statistics: Callable[[float], tuple[list[float], list[float]]],
        resolution: float | None,
        ignore_index: int | None,
        training: dict[str, Any],
    ) -> ModelSpec:
        """The spec; mean/std not given are measured by ``statistics(max_pixel_value)``."""
        max_value = float(self.max_pixel_value or default_max_pixel_value(dtype))
        mean = per_band("mean", self.mean, len(bands))
        std = per_band("std", self.std, len(bands))
        if mean is None or std is None:
            measured_mean, measured_std = statistics(max_value)
            mean, std = mean or measured_mean, std or measured_std
        table = self.class_table
        return ModelSpec(
            model_type=self._model_type(),
            class_names=table.names_by_index,
            class_colors=table.colors_by_index,
            resolution_cm=resolution,
            tile_size=tile_size,
            standardization_mean=tuple(mean),
            standardization_std=tuple(std),
            max_pixel_value=max_value,
            bands=tuple(bands),
            ignore_index=ignore_index,
            training={**training, "class_values": list(table.values)},
        )

    def _model_type(self) -> ModelType:
        return ModelType.SEGMENTOR if self.task == "segmentation" else ModelType.CLASSIFIER

    @staticmethod
    def _cached_statistics(
        path: Path, bands: int, max_value: float, images: Iterable[tuple[np.ndarray, np.ndarray | None]]
    ) -> tuple[list[float], list[float]]:
        """Band mean/std over training images, measured once and kept at ``path``."""
        document = read_json(path)
        if document is None:
            accumulator = BandStatistics(bands, max_value)
            for pixels, valid in images:
                accumulator.add(pixels, valid)
            mean, std = accumulator.mean_std()
            document = {"mean": mean, "std": std, "pixels": accumulator.count}
            write_json(path, document)
        return document["mean"], document["std"]

    @staticmethod
    def _sample(items: Sequence[Any]) -> list[Any]:
        """At most STATISTICS_SAMPLES items, spread evenly."""
        if len(items) <= STATISTICS_SAMPLES:
            return list(items)
        picks = np.linspace(0, len(items) - 1, STATISTICS_SAMPLES).round().astype(int)
        return [items[i] for i in picks]

    # -- preparing and opening ---------------------------------------------------------------

    @abc.abstractmethod
    def _build_spec(self) -> ModelSpec:
        """Do (or load from the cache) the expensive work and return the data's spec."""

    @abc.abstractmethod
    def _items(self, split: str) -> Sequence[Any]:
        """The samples of a split, as the reader takes them (classification: (source, label))."""

    @abc.abstractmethod
    def _reader(self) -> Callable[[Any], Any]:
        """Reads one item: (image, mask) for segmentation, the image for classification."""

    def prepare_data(self) -> None:
        # Once per node (Lightning); other processes find the results in the cache in setup().
        self._spec = self._build_spec()

    def setup(self, stage: str | None = None) -> None:
        if self._spec is None:
            self._spec = self._build_spec()
        reader = self._reader()
        for split in SPLITS:
            items = self._items(split)
            augment = self.augment if split == "train" else None
            if split == "train":
                items = training_subset(items, self.train_fraction)
            self.datasets[split] = self._make_dataset(items, reader, augment)

    def _make_dataset(self, items: Sequence[Any], reader: Callable[[Any], Any], augment: Any) -> Dataset:
        """One split's dataset (``augment`` is None outside training)."""
        if self.task == "segmentation":
            return SegmentationDataset(items, reader, self._spec, self.class_table, augment)
        return ClassificationDataset(items, reader, self._spec, augment)

    def _collate_fn(self) -> Callable[[list[Any]], Any] | None:
        """How samples become a batch (None: PyTorch's default stacking)."""
        return None

    # -- loaders ------------------------------------------------------------------------------

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        dataset = self.datasets.get(split)
        if dataset is None or len(dataset) == 0:
            raise RsdlError(
                f"The {split} split holds no samples. Check the split settings (fractions, block "
                "size, folds) and that labels cover the data."
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self._collate_fn(),
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
