"""ImageFolderDataModule: ordinary photos in one folder per class (torchvision's ImageFolder layout).

``root/<class>/<image>`` is split at random (per class, seeded); ``root/train/<class>/...`` with
``root/val`` (and optionally ``root/test``) uses the given split. Images are read with PIL,
converted to RGB and resized to ``image_size`` squares. Normalisation defaults to the ImageNet
mean/std, what pretrained backbones expect; give ``mean: null`` to measure it on the data.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.errors import RsdlError

from .base import SPLITS, RsdlDataModule
from .cache import cache_key, fingerprints
from .classes import ClassTable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class PhotoReader:
    """An image file as (3, size, size) uint8 RGB."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, path: str) -> np.ndarray:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
            return np.asarray(rgb).transpose(2, 0, 1).copy()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class ImageFolderDataModule(RsdlDataModule):
    """Classification of photos in class folders.

    Args:
        root: folder of class folders, or of train/val[/test] folders of class folders.
        image_size: side of the square the images are resized to (the model's tile size).
        val_fraction, test_fraction, seed: the random split per class (ignored for given splits).
        Other arguments as ChipsDataModule (max_pixel_value defaults to 255).
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        seed: int = 42,
        batch_size: int = 16,
        num_workers: int = 0,
        augment: bool = True,
        jitter: float = 0.1,
        mean: list[float] | None = IMAGENET_MEAN,
        std: list[float] | None = IMAGENET_STD,
        max_pixel_value: float | None = 255.0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            "classification", batch_size, num_workers, augment, jitter, mean, std, max_pixel_value, cache_dir
        )
        self.save_plain_hyperparameters()
        self.root = Path(root)
        if not self.root.is_dir():
            raise RsdlError(f"Image folder '{root}' does not exist.")
        self.image_size = image_size
        self.fractions = (val_fraction, test_fraction)
        if not 0 <= val_fraction + test_fraction < 1:
            raise RsdlError("val_fraction + test_fraction must lie in [0, 1).")
        self.seed = seed
        self.given_split = (self.root / "train").is_dir() and (self.root / "val").is_dir()
        class_root = self.root / "train" if self.given_split else self.root
        names = sorted(p.name for p in class_root.iterdir() if p.is_dir() and _images(p))
        if len(names) < 2:
            raise RsdlError(f"'{class_root}' needs at least two class folders holding images, found {names}.")
        self.names = names

    @cached_property
    def class_table(self) -> ClassTable:
        return ClassTable.from_names(self.names)

    @property
    def in_channels(self) -> int:
        return 3

    @cached_property
    def items(self) -> dict[str, list[tuple[str, int]]]:
        """(path, class index) per split."""
        splits: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
        for index, name in enumerate(self.names):
            if self.given_split:
                for split in SPLITS:
                    folder = self.root / split / name
                    splits[split] += [(str(p), index) for p in _images(folder)] if folder.is_dir() else []
                continue
            files = _images(self.root / name)
            order = np.random.default_rng([self.seed, index]).permutation(len(files))
            n_val, n_test = (round(len(files) * f) if f > 0 else 0 for f in self.fractions)
            n_val = max(n_val, 1) if self.fractions[0] > 0 and len(files) > 1 else n_val
            for position, file_index in enumerate(order):
                split = "val" if position < n_val else "test" if position < n_val + n_test else "train"
                splits[split].append((str(files[file_index]), index))
        return splits

    def train_counts(self) -> dict[int, int]:
        counts = dict.fromkeys(range(len(self.names)), 0)
        for _, index in self.items["train"]:
            counts[index] += 1
        return counts

    def _statistics(self, max_value: float) -> tuple[list[float], list[float]]:
        sources = [path for path, _ in self._sample(self.items["train"])]
        key = cache_key("image-folder-bands", fingerprints(sources), self.image_size, max_value)
        reader = PhotoReader(self.image_size)
        images = ((reader(path), None) for path in sources)
        return self._cached_statistics(self.cache_dir / f"images-{key}" / "bands.json", 3, max_value, images)

    def _build_spec(self) -> ModelSpec:
        return self._make_spec(
            bands=[1, 2, 3],
            dtype="uint8",
            tile_size=self.image_size,
            statistics=self._statistics,
            resolution=None,
            ignore_index=None,
            training={
                "data": {"source": "image folder", "root": str(self.root.resolve())},
                "split": {
                    "given": self.given_split,
                    "val_fraction": self.fractions[0],
                    "test_fraction": self.fractions[1],
                    "seed": self.seed,
                    "samples": {split: len(items) for split, items in self.items.items()},
                },
            },
        )

    def _items(self, split: str) -> list[tuple[str, int]]:
        return self.items[split]

    def _reader(self) -> PhotoReader:
        return PhotoReader(self.image_size)
