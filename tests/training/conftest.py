"""Fixtures of the training tests: tiny synthetic data written by code, and CLI runs.

The data are small enough for a 2-core CI machine: a chip folder in rsdl:exportchips's layout
(core/datasets/chip_folder.py), a georeferenced scene with vector labels (one invalid polygon, labels in
another CRS), and a folder of photos in two classes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points

from rsdl_qgis_plugin.core.datasets.chip_folder import (
    ClassFolders,
    classification_chip_path,
    dataset_document,
    image_chip_path,
    mask_chip_path,
)
from rsdl_qgis_plugin.core.datasets.chips import (
    ChipDecision,
    ChipMode,
    ChipOutcome,
    ChipRules,
    ChipTally,
    ChipWindow,
    Split,
    SplitSettings,
)
from rsdl_qgis_plugin.core.labels.label_rules import MaskValues, make_label_classes
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics

REPO = Path(__file__).resolve().parents[2]
SCENE_CRS = "EPSG:32636"
SCENE_ORIGIN = (450000.0, 40000.0)
CHIP = 32


def write_raster(
    path: Path, pixels: np.ndarray, pixel_size: float = 1.0, origin=SCENE_ORIGIN, nodata=None
) -> Path:
    """A GeoTIFF of (C, H, W) pixels in SCENE_CRS."""
    count, height, width = pixels.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": pixels.dtype.name,
        "crs": SCENE_CRS,
        "transform": from_origin(*origin, pixel_size, pixel_size),
        "nodata": nodata,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels)
    return path


@pytest.fixture(scope="session")
def raster_writer():
    """``write_raster(path, pixels, pixel_size=1.0, origin=SCENE_ORIGIN, nodata=None)``."""
    return write_raster


# -- a chip folder as rsdl:exportchips writes it ----------------------------------------------------


def _chip(rng: np.random.Generator, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB chip and its mask: background 0, building 1 (a square), water 2 (a band), ignore 255."""
    image = rng.integers(90, 140, (3, CHIP, CHIP), dtype=np.uint8)
    mask = np.zeros((CHIP, CHIP), dtype=np.uint8)
    if kind in (1, 3):
        mask[8:20, 8:20] = 1
        image[0, 8:20, 8:20] = 200
    if kind in (2, 3):
        mask[24:, :] = 2
        image[2, 24:, :] = 220
    mask[:2, :2] = 255  # a few unknown pixels
    return image, mask


@pytest.fixture(scope="session")
def chips_folder(tmp_path_factory) -> Path:
    """Segmentation and classification chips (mode both), 32 px, splits train 8 / val 3 / test 2."""
    root = tmp_path_factory.mktemp("chips")
    rng = np.random.default_rng(0)
    values = MaskValues(background_value=0, ignore_value=255)
    classes = make_label_classes({1: "building", 2: "water"})
    folders = ClassFolders({0: "background", 1: "building", 2: "water"})
    rules = ChipRules(ChipMode.BOTH, background_value=0)
    tally = ChipTally(255, classification=True)
    layout = {Split.TRAIN: [0, 1, 2, 3, 1, 2, 0, 1], Split.VAL: [1, 2, 0], Split.TEST: [2, 1]}
    for split, kinds in layout.items():
        for number, kind in enumerate(kinds):
            window = ChipWindow(number * CHIP, {Split.TRAIN: 0, Split.VAL: 64, Split.TEST: 128}[split], CHIP)
            image, mask = _chip(rng, kind)
            statistics = ClassStatistics(255)
            statistics.add_block(mask)
            class_value = {0: 0, 1: 1, 2: 2, 3: None}[kind]
            tally.add(ChipDecision(ChipOutcome.WRITTEN, class_value), split, statistics)
            origin = (SCENE_ORIGIN[0] + window.col, SCENE_ORIGIN[1] - window.row)
            write_raster(root / image_chip_path(split, window.chip_id), image, origin=origin)
            write_raster(root / mask_chip_path(split, window.chip_id), mask[None], origin=origin, nodata=255)
            if class_value is not None:
                path = classification_chip_path(split, folders.folder(class_value), window.chip_id)
                write_raster(root / path, image, origin=origin)
    names = {0: "background", 1: "building", 2: "water"}
    statistics = {
        split.value: {
            "chips": tally.written[split],
            "classes": st.as_table(names),
            "ignored_pixels": st.ignored,
        }
        for split, st in tally.statistics.items()
    }
    document = dataset_document(
        rules=rules,
        chip_size=CHIP,
        stride=CHIP,
        split=SplitSettings(0.2, 0.1, 64, 0),
        block_counts={"train": 4, "val": 1, "test": 1},
        image={
            "path": "scene.tif",
            "width": 192,
            "height": 256,
            "band_count": 3,
            "dtype": "uint8",
            "nodata": [None, None, None],
            "crs_wkt": rasterio.crs.CRS.from_string(SCENE_CRS).to_wkt(),
            "geotransform": [SCENE_ORIGIN[0], 1.0, 0.0, SCENE_ORIGIN[1], 0.0, -1.0],
        },
        labels={"mask": "mask.tif", "layers": [], "dtype": "uint8"},
        classes=classes,
        values=values,
        folders=folders,
        tally=tally,
        statistics=statistics,
    )
    (root / "dataset.json").write_text(json.dumps(document), encoding="utf-8")
    return root


# -- a scene with vector labels ----------------------------------------------------------------


def _to_lonlat(points: list[tuple[float, float]]) -> list[list[float]]:
    xs, ys = warp_points(SCENE_CRS, "EPSG:4326", [p[0] for p in points], [p[1] for p in points])
    return [[x, y] for x, y in zip(xs, ys)]


def _square(col: float, row: float, size: float) -> list[tuple[float, float]]:
    x0, y0 = SCENE_ORIGIN[0] + col, SCENE_ORIGIN[1] - row
    return [(x0, y0), (x0 + size, y0), (x0 + size, y0 - size), (x0, y0 - size), (x0, y0)]


@pytest.fixture(scope="session")
def vector_scene(tmp_path_factory) -> dict[str, Path]:
    """scene.tif: 3-band uint8, 128 x 128 px of 1 m (EPSG:32636); labels.geojson (EPSG:4326):
    "kind" building / water, one building a self-intersecting bow-tie."""
    folder = tmp_path_factory.mktemp("vector_scene")
    rng = np.random.default_rng(1)
    pixels = rng.integers(60, 120, (3, 128, 128), dtype=np.uint8)
    features = []
    for index, (col, row, size, kind) in enumerate(
        [
            (4, 4, 12, "building"),
            (40, 8, 10, "building"),
            (70, 70, 30, "water"),
            (100, 10, 12, "building"),
            (10, 90, 20, "water"),
            (60, 30, 8, "building"),
            (90, 100, 10, "building"),
        ]
    ):
        ring = _square(col, row, size)
        if index == 1:
            ring = [ring[0], ring[2], ring[1], ring[3], ring[0]]  # bow-tie: invalid
        pixels[0 if kind == "building" else 2, row : row + size, col : col + size] = 230
        features.append(
            {
                "type": "Feature",
                "properties": {"kind": kind, "id": index},
                "geometry": {"type": "Polygon", "coordinates": [_to_lonlat(ring)]},
            }
        )
    labels = folder / "labels.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return {"raster": write_raster(folder / "scene.tif", pixels), "labels": labels}


# -- photos in class folders -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """root/cat/*.png (reddish) and root/dog/*.jpg (bluish), 6 each, of different sizes."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(2)
    for name, channel, suffix in (("cat", 0, ".png"), ("dog", 2, ".jpg")):
        (root / name).mkdir()
        for index in range(6):
            pixels = rng.integers(0, 100, (40 + index, 50, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels).save(root / name / f"{name}_{index}{suffix}")
    return root


# -- running the CLI as a user does --------------------------------------------------------------


def training_command(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m training ...`` in a subprocess (the repository on PYTHONPATH, one thread)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "training", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="session")
def start_training():
    """Start ``python -m training ...``: a Popen with output piped."""
    return training_command


@pytest.fixture(scope="session")
def run_training():
    """Run ``python -m training ...`` to completion: (return code, output)."""

    def run(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
        process = training_command(args, cwd)
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output

    return run


# -- short Lightning fits ----------------------------------------------------------------------------


def quick_trainer(root: Path, epochs: int = 1, **kwargs) -> pl.Trainer:
    """A CPU Trainer of one train and one validation batch per epoch, with no logger."""
    return pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=1,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


@pytest.fixture(scope="session")
def make_trainer():
    """``quick_trainer(root, epochs=1, **trainer_kwargs)``."""
    return quick_trainer


@pytest.fixture(scope="session")
def trained(chips_folder, tmp_path_factory):
    """A segmentation task fitted for one step on the chip folder: (task, data module, best checkpoint).

    Session-scoped: the tasks, checkpoints and CLI tests share this one fit.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    from training.data import ChipsDataModule
    from training.tasks import SegmentationTask

    folder = tmp_path_factory.mktemp("fit")
    data = ChipsDataModule(str(chips_folder), batch_size=4, cache_dir=str(folder / "cache"))
    task = SegmentationTask(data.num_classes, data.in_channels, loss="ce+dice", class_weights="auto")
    checkpoint = ModelCheckpoint(dirpath=folder / "checkpoints", monitor="val_loss", mode="min")
    quick_trainer(folder, callbacks=[checkpoint]).fit(task, datamodule=data)
    return task, data, checkpoint.best_model_path


# -- offline --------------------------------------------------------------------------------------


def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any socket, connection or name lookup fail loudly (import torch before: its import
    subclasses ``socket.socket``)."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def no_network(monkeypatch):
    """The test runs with the network blocked (see ``block_network``)."""
    block_network(monkeypatch)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for the module: for small passes one thread is faster than two that wait
    on each other on a busy CPU. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
