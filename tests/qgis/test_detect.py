"""rsdl:detect in QGIS (pytest-qgis): real (synthetic) detectors of every layout over scenes whose
objects sit across tile seams and corners; tiled results against a whole-image pass and against the
painted objects."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from osgeo import ogr
from qgis.core import QgsCategorizedSymbolRenderer, QgsProcessingException, QgsVectorLayer

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.tiling.plan import DetectionPlan
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.detector import ObjectDecoder
from rsdl_qgis_plugin.processing_provider.detect import DetectAlgorithm
from rsdl_qgis_plugin.processing_provider.layer_styling import ClassVectorStyler
from tests import detector_models as models
from tests.cancel_feedback import CancelAt

DETECT = "rsdl:detect"
SIZE = 1000  # scene side (px); a multiple of 8, so a whole-image pass is one tile
TILE, OVERLAP_PERCENT = 320, 31.25  # 100 px overlap: objects up to 96 px lie whole in some tile
PIXEL = 0.5
X0, Y0 = 500000.0, 5000000.0


def inner_edges() -> list[int]:
    """Tile edges of the detection plan strictly inside the scene (the seams)."""
    plan = DetectionPlan(SIZE, SIZE, TILE, round(TILE * OVERLAP_PERCENT / 100))
    edges = {start for start in plan.tile_col_starts} | {start + TILE for start in plan.tile_col_starts}
    return sorted(edge for edge in edges if 0 < edge < SIZE)


def seam_points() -> list[tuple[int, int]]:
    """(x, y) centres on seams and tile corners, more than 96 px apart along rows and columns."""
    chosen: list[int] = []
    for edge in inner_edges():
        if all(abs(edge - other) > 100 for other in chosen) and 60 < edge < SIZE - 60:
            chosen.append(edge)
    return [(x, y) for x in chosen for y in chosen]


def boxes_scene(tmp_path, class_count: int = 3):
    scene = models.blank_scene(SIZE, SIZE)
    rng = np.random.default_rng(7)
    painted = []
    for index, (x, y) in enumerate(seam_points()):
        height, width = (int(v) for v in rng.integers(24, 80, size=2))
        row, col = y - height // 2 + int(rng.integers(-8, 9)), x - width // 2 + int(rng.integers(-8, 9))
        painter = models.paint_octagon if index % 2 else models.paint_rectangle
        painted.append(painter(scene, row, col, height, width, index % class_count, class_count))
    return models.write_scene(tmp_path / "scene.tif", scene, PIXEL), painted


def oriented_scene(tmp_path):
    scene = models.blank_scene(SIZE, SIZE)
    rng = np.random.default_rng(3)
    painted = []
    for x, y in seam_points():
        width = 4 * int(rng.integers(6, 16))
        height = 4 * int(rng.integers(2, width // 4 + 1))
        angle = float(rng.uniform(0, math.pi))
        painted.append(models.paint_rotated_rectangle(scene, x, y, width, height, angle))
    return models.write_scene(tmp_path / "scene.tif", scene, PIXEL), painted


def read_objects(path) -> list[dict]:
    datasource = ogr.Open(str(path))
    layer = datasource.GetLayer(0)
    objects = []
    for feature in layer:
        item = {name: feature.GetField(name) for name in feature.keys()}  # noqa: SIM118 (an OGR feature is no dict)
        item["geometry"] = feature.GetGeometryRef().Clone()
        objects.append(item)
    return objects


def map_polygon(x1: float, y1: float, x2: float, y2: float) -> ogr.Geometry:
    """A pixel box of the scene as a map polygon."""
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)):
        ring.AddPoint_2D(X0 + x * PIXEL, Y0 - y * PIXEL)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    return polygon


def iou(a: ogr.Geometry, b: ogr.Geometry) -> float:
    union = a.Union(b).GetArea()
    return a.Intersection(b).GetArea() / union if union else 0.0


def best_match(geometry: ogr.Geometry, others: list[dict]) -> tuple[float, dict]:
    return max(((iou(geometry, other["geometry"]), other) for other in others), key=lambda pair: pair[0])


def detect(run_algorithm, scene, model, output, **extra):
    parameters = {"INPUT": str(scene), "MODEL": str(model), "OUTPUT": str(output), **extra}
    return run_algorithm(DETECT, parameters)


def tiled_and_whole(run_algorithm, tmp_path, scene, model, **extra):
    tiled = detect(
        run_algorithm, scene, model, tmp_path / "tiled.gpkg", TILE_SIZE=TILE, OVERLAP=OVERLAP_PERCENT, **extra
    )
    whole = detect(run_algorithm, scene, model, tmp_path / "whole.gpkg", TILE_SIZE=SIZE, **extra)
    assert tiled["TILES"] > 1 and whole["TILES"] == 1
    return read_objects(tmp_path / "tiled.gpkg"), read_objects(tmp_path / "whole.gpkg")


def assert_seams_hold(tiled: list[dict], whole: list[dict], expected: int) -> None:
    """Tiled detection equals whole-image detection: same count, IoU >= 0.9 with each whole object,
    same class."""
    assert len(whole) == expected
    assert len(tiled) == len(whole)
    for reference in whole:
        overlap, match = best_match(reference["geometry"], tiled)
        assert overlap >= 0.9
        assert match["class_name"] == reference["class_name"]


@pytest.mark.parametrize("layout", ["yolov5", "yolov8", "rsdl"])
def test_boxes_across_seams_equal_a_whole_image_pass_and_the_painted_objects(layout, run_algorithm, tmp_path):
    scene, painted = boxes_scene(tmp_path)
    builder = {"yolov5": models.yolov5_detector, "yolov8": models.yolov8_detector}.get(layout)
    model = builder(tmp_path / "m.onnx") if builder else models.rsdl_detector(tmp_path / "m.onnx", rows=64)
    tiled, whole = tiled_and_whole(run_algorithm, tmp_path, scene, model)
    assert_seams_hold(tiled, whole, len(painted))
    for obj in painted:  # and every object is found where it was painted, with its class
        overlap, match = best_match(map_polygon(*obj.box), tiled)
        assert overlap > 0.99
        assert match["class_name"] == f"thing_{obj.class_id}"
        assert match["area"] == pytest.approx(match["geometry"].GetArea())


def test_oriented_boxes_across_seams(run_algorithm, tmp_path):
    scene, painted = oriented_scene(tmp_path)
    model = models.yolov8_obb_detector(tmp_path / "obb.onnx")
    tiled, whole = tiled_and_whole(run_algorithm, tmp_path, scene, model)
    assert_seams_hold(tiled, whole, len(painted))
    for obj in painted:
        cx, cy, width, height, angle = obj.oriented
        pixels = np.stack(np.nonzero(obj.pixels), axis=-1)
        centre = (X0 + cx * PIXEL, Y0 - cy * PIXEL)
        match = min(tiled, key=lambda o: o["geometry"].Centroid().Distance(_point(*centre)))
        # A rotated rectangle: 4 corners, area w x h, angle as painted (modulo 180 degrees).
        assert match["area"] == pytest.approx(width * height * PIXEL**2, rel=0.02)
        difference = (match["angle"] - math.degrees(angle)) % 180
        assert min(difference, 180 - difference) < 1.5
        assert match["geometry"].GetGeometryRef(0).GetGeometryRef(0).GetPointCount() == 5
        assert len(pixels) == pytest.approx(width * height, rel=0.15)


def _point(x: float, y: float) -> ogr.Geometry:
    point = ogr.Geometry(ogr.wkbPoint)
    point.AddPoint_2D(x, y)
    return point


def test_instance_masks_across_seams_become_the_painted_polygons(run_algorithm, tmp_path):
    scene, painted = boxes_scene(tmp_path)
    model = models.yolov8_seg_detector(tmp_path / "seg.onnx")
    tiled, whole = tiled_and_whole(run_algorithm, tmp_path, scene, model, OUTPUT_GEOMETRY=1)
    assert_seams_hold(tiled, whole, len(painted))
    for obj in painted:
        rows, cols = np.nonzero(obj.pixels)
        truth = ogr.Geometry(ogr.wkbMultiPolygon)
        for row, col in zip(rows, cols):
            truth.AddGeometry(map_polygon(col, row, col + 1, row + 1))
        truth = truth.UnionCascaded()
        overlap, match = best_match(truth, tiled)
        assert overlap > 0.8  # prototypes at a quarter of the resolution round small outlines
        assert match["area"] == pytest.approx(match["geometry"].GetArea())


def test_centre_points_counts_and_styling(run_algorithm, rsdl_provider, tmp_path):
    scene, painted = boxes_scene(tmp_path)
    model = models.yolov8_detector(tmp_path / "m.onnx")
    result = detect(run_algorithm, scene, model, tmp_path / "points.gpkg", TILE_SIZE=TILE, OUTPUT_GEOMETRY=2)
    points = read_objects(tmp_path / "points.gpkg")
    assert result["OBJECTS"] == len(points) == len(painted)
    expected = {}
    for obj in painted:
        expected[f"thing_{obj.class_id}"] = expected.get(f"thing_{obj.class_id}", 0) + 1
        x1, y1, x2, y2 = obj.box
        centre = _point(X0 + (x1 + x2) / 2 * PIXEL, Y0 - (y1 + y2) / 2 * PIXEL)
        assert min(p["geometry"].Distance(centre) for p in points) < 0.01
    assert json.loads(result["COUNTS"]) == expected
    layer = QgsVectorLayer(str(tmp_path / "points.gpkg"), "objects")
    backend = load_model(model)
    classes = DetectAlgorithm._classes(backend.spec, ObjectDecoder.for_backend(backend))
    ClassVectorStyler("class_name", classes).style(layer)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert {c.value() for c in renderer.categories()} >= set(expected)


def test_min_area_confidence_and_class_agnostic_suppression(run_algorithm, tmp_path):
    scene, painted = boxes_scene(tmp_path)
    model = models.yolov8_detector(tmp_path / "m.onnx")
    areas = sorted((o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) * PIXEL**2 for o in painted)
    threshold = areas[len(areas) // 2]
    result = detect(run_algorithm, scene, model, tmp_path / "big.gpkg", TILE_SIZE=TILE, MIN_AREA=threshold)
    assert result["OBJECTS"] == sum(area >= threshold for area in areas)
    nothing = detect(run_algorithm, scene, model, tmp_path / "none.gpkg", CONFIDENCE_THRESHOLD=1.0)
    assert nothing["OBJECTS"] == 0 and read_objects(tmp_path / "none.gpkg") == []


def test_regularize_squares_off_instance_polygons(run_algorithm, tmp_path):
    scene = models.blank_scene(320, 320)
    models.paint_octagon(scene, 100, 100, 80, 90, 0, 3)
    path = models.write_scene(tmp_path / "one.tif", scene, PIXEL)
    model = models.yolov8_seg_detector(tmp_path / "seg.onnx")
    detect(run_algorithm, path, model, tmp_path / "raw.gpkg", OUTPUT_GEOMETRY=1)
    detect(run_algorithm, path, model, tmp_path / "square.gpkg", OUTPUT_GEOMETRY=1, REGULARIZE=True)
    (raw,), (square,) = read_objects(tmp_path / "raw.gpkg"), read_objects(tmp_path / "square.gpkg")
    ring = square["geometry"].GetGeometryRef(0).GetGeometryRef(0)
    points = [ring.GetPoint_2D(i) for i in range(ring.GetPointCount() - 1)]
    for i in range(len(points)):  # every corner a right angle (or straight)
        (ax, ay), (bx, by), (cx, cy) = points[i - 1], points[i], points[(i + 1) % len(points)]
        cosine = ((ax - bx) * (cx - bx) + (ay - by) * (cy - by)) / (
            math.hypot(ax - bx, ay - by) * math.hypot(cx - bx, cy - by)
        )
        assert abs(cosine) < 0.02 or cosine < -0.999
    assert iou(raw["geometry"], square["geometry"]) > 0.8


def test_refusals_name_the_way_out(run_algorithm, shared_data, tmp_path):
    scene, _ = boxes_scene(tmp_path)
    boxes_only = models.yolov8_detector(tmp_path / "m.onnx")
    with pytest.raises(QgsProcessingException, match=r"OUTPUT_GEOMETRY.*boxes or centre points"):
        detect(run_algorithm, scene, boxes_only, tmp_path / "a.gpkg", OUTPUT_GEOMETRY=1)
    red = shared_data / "deepness_peer/models/one_output_sigmoid_red_detector.onnx"
    with pytest.raises(QgsProcessingException, match=r"Segmentor.*rsdl:segment"):
        detect(run_algorithm, scene, red, tmp_path / "b.gpkg")
    assert not (tmp_path / "a.gpkg").exists() and not (tmp_path / "b.gpkg").exists()


@pytest.mark.parametrize("percent", [10.0, 60.0])
def test_cancel_leaves_no_output(percent, run_processing, tmp_path):
    scene, _ = boxes_scene(tmp_path)
    model = models.yolov8_detector(tmp_path / "m.onnx")
    output = tmp_path / "objects.gpkg"
    parameters = {"INPUT": str(scene), "MODEL": str(model), "OUTPUT": str(output), "TILE_SIZE": 160}
    with pytest.raises(QgsProcessingException, match=r"(?i)cancel"):
        run_processing(DETECT, parameters, CancelAt(percent))
    assert not output.exists()
    assert leftover_temporaries(tmp_path) == []


def test_every_parameter_has_help(qgis_app):
    algorithm = DetectAlgorithm()
    algorithm.initAlgorithm()
    names = {definition.name() for definition in algorithm.parameterDefinitions()}
    assert {
        "INPUT", "MODEL", "OUTPUT", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "RESAMPLE", "EXTENT", "AREA",
        "DEVICE", "THREADS", "CONFIDENCE_THRESHOLD", "IOU_THRESHOLD", "CLASS_AGNOSTIC_NMS",
        "OUTPUT_GEOMETRY", "MIN_AREA", "SIMPLIFY", "REGULARIZE",
    } <= names  # fmt: skip
    for definition in algorithm.parameterDefinitions():
        assert definition.help(), definition.name()
