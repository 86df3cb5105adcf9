"""Unlabelled tiles for self-supervised pretraining: random windows of any number of rasters.

Nothing is preloaded and nothing is cut in advance. A tile is drawn from a seed: a raster is chosen
in proportion to its area (pixels), a ``tile_size`` window at a uniformly random position is read
with rasterio, and a tile with fewer than ``MIN_VALID_FRACTION`` valid pixels (not nodata, not
masked, finite) is drawn again. The same seed gives the same tile and views whatever the number of
worker processes; :class:`SeedSampler` draws a new set of seeds each epoch from torch's generator,
so ``seed_everything`` makes a run reproducible.

Pixels are divided by ``max_pixel_value`` and normalised per band with a mean and std measured on
``STATISTICS_TILES`` tiles (``BandStatistics`` of :mod:`training.data.normalization`); invalid
pixels become 0, the mean. Each item is two augmented views of one tile, for BYOL or SimCLR. The
augmentations work for any band count (tensors; torchvision.transforms.v2 and torch, not PIL):
random resized crop, flips, 90° rotations, per-band brightness and contrast jitter, Gaussian blur.

Every raster must have the band count of the first and be at least one tile wide and high; the
errors name the raster and the way out.
"""

from __future__ import annotations

import glob
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from rsdl_qgis_plugin.core.errors import RsdlError

from .normalization import BandStatistics, default_max_pixel_value

MIN_VALID_FRACTION = 0.5  # a tile with less is "mostly nodata" and drawn again
MAX_DRAWS = 100  # tries per tile before the rasters are declared (nearly) empty
STATISTICS_TILES = 64  # tiles the band mean and std are measured on
OPEN_HANDLES = 64  # open rasters per process (thousands of files would exhaust file handles)
# Augmentation strengths, in units of a band's standard deviation (the tiles are normalised).
CROP_SCALE = (0.25, 1.0)
BRIGHTNESS = 0.4
CONTRAST = 0.4
JITTER_PROBABILITY = 0.8
BLUR_PROBABILITY = 0.5
BLUR_SIGMA = (0.1, 2.0)


class UnlabelledTilesError(RsdlError):
    """Rasters that cannot give pretraining tiles (none matched, unreadable, too small, mixed bands)."""


@dataclass(frozen=True)
class RasterSource:
    """One input raster, as surveyed before training."""

    path: str
    width: int
    height: int
    bands: int
    dtype: str
    masked: bool  # nodata, an alpha band or a mask: the valid pixels must be read

    @property
    def pixels(self) -> int:
        return self.width * self.height


def find_rasters(patterns: Sequence[str]) -> list[str]:
    """The files that ``patterns`` (paths or globs, ``**`` for subfolders) name, in order, once each.

    A pattern that matches no file is refused, naming it: a typo must not silently drop rasters.
    """
    found: dict[str, None] = {}
    unmatched = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [path for path in matched if os.path.isfile(path)]
        if not matches:
            unmatched.append(pattern)
        found.update(dict.fromkeys(matches))
    if unmatched or not found:
        named = ", ".join(repr(p) for p in unmatched) or "(no pattern given)"
        raise UnlabelledTilesError(
            f"No raster matched {named}. Check the path; quote globs (e.g. 'tiles/*.tif', "
            "'scenes/**/*.tif' for subfolders) so that they reach python -m training unexpanded."
        )
    return list(found)


def _is_masked(source: Any) -> bool:
    return source.nodata is not None or any(
        flags != [MaskFlags.all_valid] for flags in source.mask_flag_enums
    )


def survey_rasters(paths: Sequence[str], tile_size: int) -> list[RasterSource]:
    """Open every raster once: its size, bands and type; refuses what cannot give tiles."""
    sources: list[RasterSource] = []
    for path in paths:
        try:
            with rasterio.open(path) as source:
                surveyed = RasterSource(
                    str(path),
                    source.width,
                    source.height,
                    source.count,
                    source.dtypes[0],
                    _is_masked(source),
                )
        except RasterioError as error:
            raise UnlabelledTilesError(
                f"Cannot read raster '{path}' ({error}). Remove it from the inputs, or narrow the "
                "pattern to the rasters (e.g. '*.tif')."
            ) from None
        if sources and surveyed.bands != sources[0].bands:
            first = sources[0]
            raise UnlabelledTilesError(
                f"'{path}' has {surveyed.bands} bands but the first raster '{first.path}' has "
                f"{first.bands}: pretrain on rasters of one sensor and band order (run once per band set)."
            )
        side = min(surveyed.width, surveyed.height)
        if tile_size > side:
            raise UnlabelledTilesError(
                f"'{path}' is {surveyed.width} x {surveyed.height} px, smaller than a tile of {tile_size} "
                f"px: choose --tile-size {side} or less, or leave that raster out."
            )
        sources.append(surveyed)
    return sources


class TileReader:
    """Random valid tiles of the rasters (see the module docstring); picklable for worker processes,
    which open their own handles (rasterio handles must not cross a fork)."""

    def __init__(
        self,
        sources: Sequence[RasterSource],
        tile_size: int,
        min_valid: float = MIN_VALID_FRACTION,
        max_draws: int = MAX_DRAWS,
    ) -> None:
        self.sources = list(sources)
        self.tile_size = tile_size
        self.min_valid = min_valid
        self.max_draws = max_draws
        self.bands = self.sources[0].bands
        self._cumulative = np.cumsum([s.pixels for s in self.sources], dtype=np.float64)
        self._handles: OrderedDict[int, Any] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": OrderedDict(), "_pid": None}

    def _open(self, index: int) -> Any:
        if self._pid != os.getpid():  # a new worker process: the parent's handles are not ours
            self._handles, self._pid = OrderedDict(), os.getpid()
        handle = self._handles.get(index)
        if handle is None:
            if len(self._handles) >= OPEN_HANDLES:
                self._handles.popitem(last=False)[1].close()
            handle = self._handles[index] = rasterio.open(self.sources[index].path)
        self._handles.move_to_end(index)
        return handle

    def read(self, index: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (C, T, T) float32 as stored, and valid (T, T) bool, of the tile at (row, col)."""
        source = self.sources[index]
        window = Window(col, row, self.tile_size, self.tile_size)
        try:
            handle = self._open(index)
            pixels = handle.read(window=window).astype(np.float32, copy=False)
            valid = np.isfinite(pixels).all(axis=0)
            if source.masked:
                valid &= (handle.read_masks(window=window) > 0).all(axis=0)
        except RasterioError as error:
            raise UnlabelledTilesError(f"Cannot read a tile of raster '{source.path}': {error}") from None
        return pixels, valid

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random tile with enough valid pixels: a raster chosen by area, a uniform position."""
        size = self.tile_size
        for _ in range(self.max_draws):
            # random() < 1, so the index is that of a raster, each with the odds of its share of pixels.
            index = int(np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1], side="right"))
            source = self.sources[index]
            row = int(rng.integers(0, source.height - size + 1))
            col = int(rng.integers(0, source.width - size + 1))
            pixels, valid = self.read(index, row, col)
            if valid.mean() >= self.min_valid:
                return pixels, valid
        raise UnlabelledTilesError(
            f"None of {self.max_draws} random tiles of {size} px had {self.min_valid:.0%} valid pixels "
            "(not nodata): the rasters are mostly nodata. Leave out the empty ones or choose a smaller "
            "--tile-size."
        )

    def close(self) -> None:
        while self._handles:
            self._handles.popitem()[1].close()


def measure_normalisation(
    reader: TileReader, max_pixel_value: float, tiles: int = STATISTICS_TILES, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-band mean and std (of ``pixels / max_pixel_value``) over the valid pixels of random tiles."""
    rng = np.random.default_rng(seed)
    statistics = BandStatistics(reader.bands, max_pixel_value)
    for _ in range(tiles):
        pixels, valid = reader.draw(rng)
        statistics.add(pixels, valid)
    return statistics.mean_std()


def raster_max_pixel_value(sources: Sequence[RasterSource]) -> float:
    """The scale of the first raster's data type (255 for 8-bit, 65535 for uint16, 1 for floats)."""
    return default_max_pixel_value(sources[0].dtype)


# -- augmentations for any band count ------------------------------------------------------------


class RandomRot90(nn.Module):
    """A rotation by 0, 90, 180 or 270 degrees (imagery has no "up")."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.rot90(image, int(torch.randint(0, 4, ())), dims=(-2, -1))


class BandJitter(nn.Module):
    """Per-band brightness and contrast jitter of a normalised (C, H, W) tile, with probability ``p``.

    Each band gets its own shift (up to ``brightness``) and its own factor on the spread around its
    mean (1 +- ``contrast``): the multispectral analogue of colour jitter.
    """

    def __init__(
        self, brightness: float = BRIGHTNESS, contrast: float = CONTRAST, p: float = JITTER_PROBABILITY
    ) -> None:
        super().__init__()
        self.brightness, self.contrast, self.p = brightness, contrast, p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        bands = image.shape[-3]
        shift = (torch.rand(bands, 1, 1) * 2.0 - 1.0) * self.brightness
        factor = 1.0 + (torch.rand(bands, 1, 1) * 2.0 - 1.0) * self.contrast
        mean = image.mean(dim=(-2, -1), keepdim=True)
        return (image - mean) * factor + mean + shift


def view_transform(tile_size: int) -> v2.Compose:
    """One random view of a normalised tile (see the module docstring)."""
    kernel = max(3, (tile_size // 10) | 1)  # odd, about a tenth of the tile as in SimCLR
    return v2.Compose(
        [
            v2.RandomResizedCrop(tile_size, scale=CROP_SCALE, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(),
            BandJitter(),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=BLUR_SIGMA)], p=BLUR_PROBABILITY),
        ]
    )


class UnlabelledTiles(Dataset):
    """Item ``seed`` (from :class:`SeedSampler`): two augmented views, float32 (C, T, T), of one tile."""

    def __init__(
        self, reader: TileReader, mean: Sequence[float], std: Sequence[float], max_pixel_value: float
    ) -> None:
        self.reader = reader
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.max_pixel_value = float(max_pixel_value)
        self.transform = view_transform(reader.tile_size)

    def tile(self, rng: np.random.Generator) -> torch.Tensor:
        """A normalised random tile, invalid pixels at 0 (the band mean)."""
        pixels, valid = self.reader.draw(rng)
        image = (torch.from_numpy(pixels) / self.max_pixel_value - self.mean) / self.std
        return torch.where(torch.from_numpy(valid), image, torch.zeros(()))

    def __getitem__(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.tile(np.random.default_rng(seed))
        # The views' randomness from the seed too (torchvision's transforms draw from torch's
        # global generator): the same seed gives the same views in any worker.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), self.transform(image)


class SeedSampler(Sampler[int]):
    """``length`` random seeds per epoch, drawn from torch's global generator when iterated."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        yield from torch.randint(0, 2**62, (self.length,)).tolist()


def tile_loader(
    dataset: UnlabelledTiles, tiles_per_epoch: int, batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """Batches of ``(views_a, views_b)``; the last partial batch is dropped (BatchNorm needs 2+)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SeedSampler(tiles_per_epoch),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        drop_last=True,
    )
