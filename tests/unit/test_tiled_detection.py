"""Tiled detection (inference/tiled_detection.py): a real (synthetic) ONNX detector over in-memory
rasters; objects found where they were painted, handed on while the raster is still being read,
nodata holding no objects, and cancel."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.errors import CancelledError
from rsdl_qgis_plugin.core.objects.detections import Detections
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.detector import ObjectDecoder
from rsdl_qgis_plugin.inference.tiled_detection import (
    DetectionSettings,
    TiledDetection,
    drop_objects_on_nodata,
)
from tests import detector_models as models

TILE = 160


class SceneReader:
    """Windows of an in-memory uint8 scene; ``invalid`` marks nodata. Counts the rows read."""

    def __init__(self, scene: np.ndarray, invalid: np.ndarray | None = None) -> None:
        self.scene = scene
        self.invalid = invalid
        self.rows_read = 0

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        self.rows_read = max(self.rows_read, row + rows)
        valid = np.ones((rows, cols), dtype=bool)
        if self.invalid is not None:
            valid = ~self.invalid[row : row + rows, col : col + cols]
        return self.scene[:, row : row + rows, col : col + cols], valid


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    backend = load_model(models.yolov8_detector(tmp_path_factory.mktemp("m") / "v8.onnx"))
    return backend, ObjectDecoder.for_backend(backend)


def tall_scene(height: int = 1600, width: int = 480):
    """Objects in a grid every 160 px (the synthetic detector needs them 96 px apart), some across the
    detection plan's seams."""
    scene = models.blank_scene(height, width)
    rng = np.random.default_rng(5)
    painted = []
    for row in range(20, height - 80, 160):
        for col in range(20, width - 80, 160):
            size = rng.integers(20, 56, size=2)
            painted.append(models.paint_rectangle(scene, row, col, int(size[0]), int(size[1]), 1, 3))
    return scene, painted


def run(detector, reader, width, height, **options):
    backend, decoder = detector
    settings = DetectionSettings(TILE, 64, 2, 0.25, 0.45)
    detection = TiledDetection(backend, backend.spec, decoder, settings, width, height)
    written: list[tuple[int, Detections]] = []
    counts = detection.run(
        lambda: reader, lambda objects: written.append((reader.rows_read, objects)), **options
    )
    return counts, written


def test_objects_are_found_where_painted_and_handed_on_while_reading(detector):
    scene, painted = tall_scene()
    reader = SceneReader(scene)
    counts, written = run(detector, reader, scene.shape[2], scene.shape[1])
    objects = Detections.concatenate([objects for _, objects in written])
    assert counts["objects"] == len(objects) == len(painted)
    found = sorted(map(tuple, objects.boxes.tolist()))
    assert found == sorted(obj.box for obj in painted)
    assert (objects.class_ids == 1).all()
    # Streaming: most objects were written before the reader reached the raster's last rows.
    early = sum(len(objects) for rows_read, objects in written if rows_read < scene.shape[1])
    assert len(written) > 3 and early > len(painted) / 2


def test_objects_centred_on_nodata_are_dropped(detector):
    scene, painted = tall_scene(height=480)
    invalid = np.zeros(scene.shape[1:], dtype=bool)
    first = painted[0]
    x1, y1, x2, y2 = (int(v) for v in first.box)
    invalid[y1:y2, x1:x2] = True  # one object lies wholly on nodata
    _, written = run(detector, SceneReader(scene, invalid), scene.shape[2], scene.shape[1])
    boxes = {tuple(box) for _, objects in written for box in objects.boxes.tolist()}
    assert first.box not in boxes
    assert len(boxes) == len(painted) - 1


def test_drop_objects_on_nodata_tests_the_box_centre():
    detections = Detections([[0, 0, 4, 4], [4, 4, 8, 8]], [0.9, 0.8], [0, 0])
    valid = np.ones((8, 8), dtype=bool)
    valid[2, 2] = False  # the first box's centre pixel
    kept = drop_objects_on_nodata(detections, valid)
    assert kept.boxes.tolist() == [[4, 4, 8, 8]]
    assert drop_objects_on_nodata(detections, None) is detections


def test_cancel_stops_the_run(detector):
    scene, _ = tall_scene()
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        run(detector, SceneReader(scene), scene.shape[2], scene.shape[1], is_cancelled=cancelled)
