"""Batch prediction with detectors and instance segmentors (training/predict.py, object_files.py):
the real (synthetic) ONNX detectors of tests/detector_models.py over small GeoTIFFs of painted
objects; the GeoPackage of objects against the painted objects in map coordinates and against the
engine run directly, complete or absent, and the refusals shared with segmentation."""

from __future__ import annotations

import math
import re

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from pyogrio.errors import DataLayerError

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.objects.detections import Detections
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.detector import ObjectDecoder
from rsdl_qgis_plugin.inference.tiled_detection import DetectionSettings, TiledDetection
from tests import detector_models as models
from tests.rasters import write_geotiff
from training import object_files
from training.predict import main

PIXEL = 0.5
X0, Y0 = 500000.0, 5000000.0  # models.write_scene's origin
HEIGHT, WIDTH = 288, 352  # not square, so rows and columns cannot be swapped unseen
TILE, OVERLAP_PERCENT = 128, 40  # 51 px overlap: the painted objects (<= 44 px) lie whole in a tile
CENTRES = [(y, x) for y in (70, 218) for x in (80, 250)]  # > 96 px apart (the nets' windows)
METADATA = {"resolution": 50}  # cm: the scenes' 0.5 m pixels


class SceneReader:
    """The engine's reader over the in-memory scene, every pixel valid (as the GeoTIFF, no nodata)."""

    def __init__(self, scene: np.ndarray) -> None:
        self.scene = scene

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        return self.scene[:, row : row + rows, col : col + cols], np.ones((rows, cols), dtype=bool)


def box_scene(painter=models.paint_rectangle) -> tuple[np.ndarray, list[models.PaintedObject]]:
    """Rectangles (or octagons) of 24-44 px, of classes 0, 1, 2, 0, one across each tile seam area."""
    scene = models.blank_scene(HEIGHT, WIDTH)
    rng = np.random.default_rng(2)
    painted = []
    for index, (y, x) in enumerate(CENTRES):
        height, width = (int(v) for v in rng.integers(24, 45, size=2))
        painted.append(painter(scene, y - height // 2, x - width // 2, height, width, index % 3, 3))
    return scene, painted


def oriented_scene() -> tuple[np.ndarray, list[models.PaintedObject]]:
    scene = models.blank_scene(HEIGHT, WIDTH)
    painted = []
    for index, (y, x) in enumerate(CENTRES):
        width, height = (44, 16) if index % 2 else (32, 20)
        painted.append(models.paint_rotated_rectangle(scene, x, y, width, height, 0.4 + 0.7 * index))
    return scene, painted


def map_box(box: tuple[float, float, float, float]) -> shapely.Polygon:
    """A pixel box (x1, y1, x2, y2) of the scene in map coordinates (north up, 0.5 m pixels)."""
    x1, y1, x2, y2 = box
    return shapely.box(X0 + x1 * PIXEL, Y0 - y2 * PIXEL, X0 + x2 * PIXEL, Y0 - y1 * PIXEL)


def iou(a: shapely.Geometry, b: shapely.Geometry) -> float:
    return a.intersection(b).area / a.union(b).area


def predict(raster, model, output, *extra: str) -> int:
    return main(
        [
            str(raster),
            "--model",
            str(model),
            "--output-dir",
            str(output),
            "--tile-size",
            str(TILE),
            "--overlap",
            str(OVERLAP_PERCENT),
            "--batch-size",
            "3",
            "--threads",
            "1",
            "--devices",
            "cpu",
            *extra,
        ]
    )


def read_objects(path) -> list[dict]:
    """The features of layer 'objects': fields plus shapely ``geometry``, in fid order."""
    meta, _fids, geometries, values = pyogrio.raw.read(path, layer="objects")
    assert meta["geometry_type"] == "MultiPolygon" and meta["crs"] == "EPSG:32633"
    return [
        {"geometry": shapely.from_wkb(wkb), **dict(zip(meta["fields"], row))}
        for wkb, row in zip(geometries, zip(*values))
    ]


def best_match(geometry, objects: list[dict]) -> tuple[float, dict]:
    return max(((iou(geometry, obj["geometry"]), obj) for obj in objects), key=lambda pair: pair[0])


@pytest.fixture(scope="module")
def detectors(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("detectors")
    return {
        "yolov8": models.yolov8_detector(folder / "v8.onnx", metadata=METADATA),
        "masks": models.rsdl_detector(folder / "masks.onnx", masks=True, metadata=METADATA),
        "obb": models.yolov8_obb_detector(folder / "obb.onnx", metadata=METADATA),
    }


def test_boxes_land_where_they_were_painted_with_their_fields(tmp_path, detectors, capsys):
    scene, painted = box_scene()
    raster = models.write_scene(tmp_path / "scene.tif", scene, PIXEL)
    assert predict(raster, detectors["yolov8"], tmp_path / "out", "--confidence") == 0

    output = tmp_path / "out" / "scene_objects.gpkg"
    # No confidence raster (a warning says so): the objects and the manifest.
    assert sorted((tmp_path / "out").iterdir()) == [tmp_path / "out" / "rsdl_manifest.json", output]
    assert pyogrio.list_layers(output)[:, 0].tolist() == ["objects"]
    objects = read_objects(output)
    assert len(objects) == len(painted)
    for obj in painted:
        expected = map_box(obj.box)
        overlap, match = best_match(expected, objects)
        assert overlap >= 0.9
        assert match["class_name"] == f"thing_{obj.class_id}" and match["class_id"] == obj.class_id
        assert 0.25 <= match["score"] <= 1.0
        assert match["area"] == pytest.approx(expected.area)
        assert match["area"] == pytest.approx(match["geometry"].area)
    assert "angle" not in objects[0]
    out, err = capsys.readouterr()
    assert "--confidence (a confidence raster) applies to segmentation models; ignored." in err
    assert "4 objects (thing_0 2, thing_1 1, thing_2 1)" in out
    assert "In all: 4 objects (thing_0 2, thing_1 1, thing_2 1)." in out
    assert leftover_temporaries(tmp_path / "out") == []


def test_instance_masks_become_polygons_of_the_painted_area(tmp_path, detectors):
    scene, painted = box_scene(models.paint_octagon)  # cut corners: mask area < box area
    raster = models.write_scene(tmp_path / "octagons.tif", scene, PIXEL)
    assert predict(raster, detectors["masks"], tmp_path / "out") == 0

    objects = read_objects(tmp_path / "out" / "octagons_objects.gpkg")
    assert len(objects) == len(painted)
    for obj in painted:
        box = map_box(obj.box)
        _, match = best_match(box, objects)
        painted_area = obj.pixels.sum() * PIXEL**2
        one_row = (obj.box[2] - obj.box[0]) * PIXEL**2
        assert abs(match["area"] - painted_area) <= one_row
        assert match["area"] == pytest.approx(match["geometry"].area)
        assert match["area"] < box.area - one_row  # the outline, not the box
        assert match["geometry"].bounds == pytest.approx(box.bounds)
        assert match["class_name"] == f"thing_{obj.class_id}"


@pytest.mark.parametrize("kind", ["yolov8", "obb"])
def test_the_file_holds_what_the_engine_finds(tmp_path, detectors, kind):
    scene, painted = oriented_scene() if kind == "obb" else box_scene()
    raster = models.write_scene(tmp_path / "scene.tif", scene, PIXEL)
    threshold = ["--confidence-threshold", "0.3", "--iou-threshold", "0.5"]
    assert predict(raster, detectors[kind], tmp_path / "out", *threshold) == 0
    objects = read_objects(tmp_path / "out" / "scene_objects.gpkg")

    backend = load_model(detectors[kind], threads=1, device="cpu")
    settings = DetectionSettings(TILE, round(TILE * OVERLAP_PERCENT / 100), 3, 0.3, 0.5)
    detection = TiledDetection(
        backend, backend.spec, ObjectDecoder.for_backend(backend), settings, WIDTH, HEIGHT
    )
    found: list[Detections] = []
    detection.run(lambda: SceneReader(scene), found.append)
    direct = Detections.concatenate(found)
    assert len(direct) == len(objects) == len(painted)

    corners = direct.corners()
    for index in range(len(direct)):
        ring = [(X0 + x * PIXEL, Y0 - y * PIXEL) for x, y in corners[index]]
        obj = objects[index]  # written in the order the engine handed them on
        assert (
            obj["geometry"]
            .normalize()
            .equals_exact(shapely.MultiPolygon([shapely.Polygon(ring)]).normalize(), 1e-6)
        )
        assert obj["score"] == direct.scores[index]
        assert obj["class_id"] == direct.class_ids[index]
        assert obj["area"] == pytest.approx(direct.areas()[index] * PIXEL**2)
        if kind == "obb":
            assert obj["angle"] == pytest.approx(math.degrees(direct.oriented[index, 4]) % 180)
            centre = obj["geometry"].centroid
            nearest = min(painted, key=lambda p: map_box(p.box).centroid.distance(centre))
            assert obj["angle"] == pytest.approx(math.degrees(nearest.oriented[4]) % 180, abs=1.0)


def test_a_failure_mid_run_leaves_no_objects_file(tmp_path, detectors, monkeypatch, capsys):
    scene, _ = box_scene()
    raster = models.write_scene(tmp_path / "scene.tif", scene, PIXEL)
    monkeypatch.setattr(object_files, "FLUSH_EVERY", 1)  # every object appended as it comes
    real_write, calls = pyogrio.raw.write, []

    def failing_write(*args, **kwargs):
        calls.append(kwargs["append"])
        if len(calls) == 3:  # the layer was made and one object appended
            raise DataLayerError("disk is full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(object_files.pyogrio.raw, "write", failing_write)
    output = tmp_path / "out"
    assert predict(raster, detectors["yolov8"], output) == 1
    assert calls == [False, True, True]
    error = capsys.readouterr().err
    assert "FAILED" in error and "disk is full" in error and "scene_objects.gpkg" in error
    assert ".rsdl-tmp-" not in error  # the final path is named, not the hidden temporary
    assert [path.name for path in output.iterdir()] == ["rsdl_manifest.json"]


def test_a_complete_raster_is_skipped_and_the_refusals_of_segmentation(tmp_path, detectors, capsys):
    scene, _ = box_scene()
    raster = models.write_scene(tmp_path / "scene.tif", scene, PIXEL)
    output = tmp_path / "out"
    assert predict(raster, detectors["yolov8"], output) == 0
    written = output / "scene_objects.gpkg"
    before = (written.stat().st_mtime_ns, written.read_bytes())
    capsys.readouterr()
    assert predict(raster, detectors["yolov8"], output) == 0  # the manifest has it complete
    assert re.search(r"skipped \(complete in the manifest\)\s+1\n", capsys.readouterr().out)
    assert (written.stat().st_mtime_ns, written.read_bytes()) == before

    geographic = write_geotiff(tmp_path / "degrees.tif", scene, (10.0, 1e-5, 0.0, 50.0, 0.0, -1e-5), 4326)
    two_bands = models.write_scene(tmp_path / "two_bands.tif", scene[:2], PIXEL)
    refused = tmp_path / "refused"
    assert predict(geographic, detectors["yolov8"], refused) == 1
    assert "The raster's CRS is geographic (degrees)" in capsys.readouterr().err
    assert predict(two_bands, detectors["yolov8"], refused) == 1
    assert "needs 3 input bands but the raster has 2" in capsys.readouterr().err
    assert [path.name for path in refused.iterdir()] == ["rsdl_manifest.json"]  # the failures
