"""Decoding detector outputs (inference/detector.py): every layout against a reference decoder
written here with torch and torchvision (nms, batched_nms, F.interpolate, shapely for oriented
overlap), on real synthetic detectors (tests/detector_models.py) run with onnxruntime; and the
detectors really find the painted objects."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
import torchvision
from torch.nn import functional as F  # noqa: N812 (torch's own spelling)

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.objects.detections import Detections
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.detector import (
    DEFAULT_CONFIDENCE,
    DEFAULT_IOU_THRESHOLD,
    ObjectDecoder,
    detection_thresholds,
)
from tests import detector_models as dm

TILE = dm.TILE
BUILDERS = {
    "v5": dm.yolov5_detector,
    "v8": dm.yolov8_detector,
    "seg": dm.yolov8_seg_detector,
    "obb": dm.yolov8_obb_detector,
    "rsdl": dm.rsdl_detector,
    "rsdl-masks": lambda path: dm.rsdl_detector(path, masks=True),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("detectors")
    return {name: build(folder / f"{name}.onnx") for name, build in BUILDERS.items()}


def _box_scene() -> tuple[np.ndarray, list[dm.PaintedObject]]:
    """Rectangles and octagons of three classes, one cut by the tile's left edge and one by its
    bottom edge, apart by more than the detectors' window."""
    scene = dm.blank_scene()
    objects = [
        dm.paint_rectangle(scene, 40, 30, 40, 30, 0),
        dm.paint_rectangle(scene, 60, 250, 21, 57, 2),
        dm.paint_octagon(scene, 250, 450, 48, 36, 1),
        dm.paint_rectangle(scene, 420, -10, 30, 26, 1),  # cut by the left edge
        dm.paint_octagon(scene, 610, 250, 44, 40, 2),  # cut by the bottom edge
        dm.paint_rectangle(scene, 470, 520, 33, 41, 0),
    ]
    return scene, objects


def _touching_scene() -> np.ndarray:
    """Two rectangles of different classes side by side: the detector sees one box of two classes,
    so class-aware and class-agnostic NMS differ."""
    scene = dm.blank_scene()
    dm.paint_rectangle(scene, 200, 200, 30, 20, 0)
    dm.paint_rectangle(scene, 200, 220, 30, 20, 2)
    return scene


def _obb_scene() -> tuple[np.ndarray, list[dm.PaintedObject]]:
    scene = dm.blank_scene()
    objects = [
        dm.paint_rotated_rectangle(scene, 120, 130, 48, 20, 0.6),
        dm.paint_rotated_rectangle(scene, 450, 400, 40, 16, 2.2),
        dm.paint_rotated_rectangle(scene, 300, 560, 56, 24, 1.3),
        dm.paint_rotated_rectangle(scene, 560, 150, 32, 12, 0.0),
    ]
    return scene, objects


def _scene_for(name: str) -> tuple[np.ndarray, list[dm.PaintedObject]]:
    return _obb_scene() if name == "obb" else _box_scene()


# -- the reference decoder (independent of rsdl's) ----------------------------------------------------


def _reference_oriented_nms(rboxes: torch.Tensor, scores: torch.Tensor, iou: float) -> list[int]:
    """Greedy NMS of oriented boxes with shapely polygons."""
    polygons = []
    for cx, cy, w, h, a in rboxes.tolist():
        box = shapely.geometry.box(-w / 2, -h / 2, w / 2, h / 2)
        polygons.append(shapely.affinity.translate(shapely.affinity.rotate(box, a, use_radians=True), cx, cy))
    kept: list[int] = []
    for index in torch.argsort(scores, descending=True, stable=True).tolist():
        overlaps = [
            polygons[index].intersection(polygons[k]).area / polygons[index].union(polygons[k]).area
            for k in kept
        ]
        if all(value <= iou for value in overlaps):
            kept.append(index)
    return kept


def _reference(
    name: str, outputs: list[np.ndarray], item: int, conf: float, iou: float, agnostic: bool, nc: int
) -> dict[str, object]:
    if name.startswith("rsdl"):
        boxes = torch.from_numpy(outputs[0][item]).double()
        scores = torch.from_numpy(outputs[1][item]).double()
        classes = torch.from_numpy(outputs[2][item]).long()
        rows = torch.arange(len(scores))
    else:
        p = torch.from_numpy(outputs[0][item]).double()
        p = p if name == "v5" else p.T
        # YOLOv5: conf = obj_conf * cls_conf
        class_scores = p[:, 5 : 5 + nc] * p[:, 4:5] if name == "v5" else p[:, 4 : 4 + nc]
        scores, classes = class_scores.max(dim=1)
        rows = torch.arange(len(scores))
        boxes = torchvision.ops.box_convert(p[:, :4], "cxcywh", "xyxy")
    keep = (scores >= conf) & (scores > 0)
    boxes, scores, classes, rows = boxes[keep], scores[keep], classes[keep], rows[keep]
    if name == "obb":
        p = torch.from_numpy(outputs[0][item]).double().T[rows]
        w, h, angle = p[:, 2], p[:, 3], p[:, 4 + nc]
        swap = w < h
        rboxes = torch.stack(
            [
                p[:, 0],
                p[:, 1],
                torch.where(swap, h, w),
                torch.where(swap, w, h),
                (angle + swap * math.pi / 2) % math.pi,
            ],
            dim=1,
        )
        kept = []
        for value in [None] if agnostic else classes.unique().tolist():
            members = torch.arange(len(scores)) if value is None else torch.nonzero(classes == value)[:, 0]
            kept += [int(members[k]) for k in _reference_oriented_nms(rboxes[members], scores[members], iou)]
        kept = torch.tensor(kept, dtype=torch.long)
        return {
            "oriented": rboxes[kept].numpy(),
            "scores": scores[kept].numpy(),
            "classes": classes[kept].numpy(),
        }
    boxes = boxes.clamp(0, TILE)
    real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, classes, rows = boxes[real], scores[real], classes[real], rows[real]
    if agnostic:
        kept = torchvision.ops.nms(boxes, scores, iou)
    else:
        kept = torchvision.ops.batched_nms(boxes, scores, classes, iou)
    result = {"boxes": boxes[kept].numpy(), "scores": scores[kept].numpy(), "classes": classes[kept].numpy()}
    if name == "seg":
        p = torch.from_numpy(outputs[0][item]).double().T[rows[kept]]
        protos = torch.from_numpy(outputs[1][item]).double()
        nm, mh, mw = protos.shape
        masks = torch.sigmoid(p[:, 4 + nc : 4 + nc + nm] @ protos.view(nm, -1)).view(-1, mh, mw)
        scaled = result_boxes = torch.from_numpy(result["boxes"]) * torch.tensor([mw / TILE, mh / TILE] * 2)
        cols = torch.arange(mw, dtype=torch.float64)[None, None, :]
        rows_ = torch.arange(mh, dtype=torch.float64)[None, :, None]
        x1, y1, x2, y2 = (scaled[:, i, None, None] for i in range(4))
        masks = masks * ((cols >= x1) & (cols < x2) & (rows_ >= y1) & (rows_ < y2))  # Ultralytics' crop_mask
        del result_boxes
        full = F.interpolate(masks[None], (TILE, TILE), mode="bilinear", align_corners=False)[0] > 0.5
        result["masks"] = full.numpy()
    if name == "rsdl-masks":
        result["masks"] = outputs[3][item][rows[kept].numpy()] > 0.5
    return result


def _order(boxes_or_oriented: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.lexsort((*np.round(boxes_or_oriented, 4).T[::-1], -np.round(scores, 6)))


def _full_mask(mask, shape=(TILE, TILE)) -> np.ndarray:
    full = np.zeros(shape, dtype=bool)
    full[mask.row0 : mask.row0 + mask.mask.shape[0], mask.col0 : mask.col0 + mask.mask.shape[1]] = mask.mask
    return full


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _compare(name: str, ours: Detections, reference: dict[str, object]) -> None:
    oriented = name == "obb"
    geometry = ours.oriented if oriented else ours.boxes
    expected = reference["oriented" if oriented else "boxes"]
    assert len(ours) == len(expected) > 0
    mine, theirs = _order(geometry, ours.scores), _order(expected, reference["scores"])
    np.testing.assert_allclose(geometry[mine], expected[theirs], atol=1e-4)
    np.testing.assert_allclose(ours.scores[mine], reference["scores"][theirs], atol=1e-4)
    np.testing.assert_array_equal(ours.class_ids[mine], reference["classes"][theirs])
    assert np.all(np.diff(ours.scores) <= 0)  # highest score first
    if "masks" in reference:
        for index, expected_index in zip(mine, theirs):
            mask, box = ours.masks[index], ours.boxes[index]
            # Cut to the box's pixels.
            assert (mask.row0, mask.col0) == (math.floor(box[1]), math.floor(box[0]))
            assert mask.mask.shape == (math.ceil(box[3]) - mask.row0, math.ceil(box[2]) - mask.col0)
            full = reference["masks"][expected_index]
            window = np.zeros_like(full)
            window[mask.row0 : mask.row0 + mask.mask.shape[0], mask.col0 : mask.col0 + mask.mask.shape[1]] = (
                True
            )
            assert _iou(_full_mask(mask), full & window) >= 0.99
    else:
        assert ours.masks is None


def _run(path: Path, batch: np.ndarray) -> tuple[ObjectDecoder, list[np.ndarray]]:
    backend = load_model(str(path))
    return ObjectDecoder.for_backend(backend), backend.run(batch)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize(
    ("conf", "iou", "agnostic"), [(0.3, 0.45, False), (0.05, 0.3, True), (0.6, 0.7, False)]
)
def test_every_layout_decodes_as_the_reference_decoder(models, name, conf, iou, agnostic):
    scene, _ = _scene_for(name)
    other = _touching_scene() if name != "obb" else np.flip(scene, axis=2).copy()
    decoder, outputs = _run(models[name], dm.normalized(np.stack([scene, other])))
    decoded = decoder.decode(outputs, conf, iou, agnostic, TILE)
    assert len(decoded) == 2
    nc = decoder.class_count
    for item, detections in enumerate(decoded):
        _compare(name, detections, _reference(name, outputs, item, conf, iou, agnostic, nc))


def test_class_aware_and_agnostic_nms_differ_on_touching_objects(models):
    decoder, outputs = _run(models["v8"], dm.normalized(_touching_scene()))
    aware = decoder.decode(outputs, 0.3, 0.45, False, TILE)[0]
    agnostic = decoder.decode(outputs, 0.3, 0.45, True, TILE)[0]
    # One box around both rectangles, scored once per class it holds.
    np.testing.assert_array_equal(aware.boxes, [[200, 200, 240, 230]] * 2)
    assert sorted(aware.class_ids) == [0, 2]
    assert len(agnostic) == 1


@pytest.mark.parametrize("name", ["v5", "v8", "seg", "rsdl", "rsdl-masks"])
def test_the_synthetic_detectors_find_the_painted_objects(models, name):
    scene, objects = _box_scene()
    decoder, outputs = _run(models[name], dm.normalized(scene))
    found = decoder.decode(outputs, 0.3, 0.45, False, TILE)[0]
    painted = np.array([o.box for o in objects])
    painted = np.clip(painted, 0, TILE)  # cut where the tile cuts them
    assert len(found) == len(objects)
    order = np.lexsort(found.boxes.T[::-1])
    expected = np.lexsort(painted.T[::-1])
    np.testing.assert_allclose(found.boxes[order], painted[expected], atol=1e-4)
    np.testing.assert_array_equal(found.class_ids[order], [objects[i].class_id for i in expected])
    assert np.all(found.scores > 0.5)
    if name in ("seg", "rsdl-masks"):
        for index, object_index in zip(order, expected):
            iou = _iou(_full_mask(found.masks[index]), objects[object_index].pixels)
            # rsdl masks are the painted pixels; -seg masks pass through 4x coarser prototypes.
            assert iou == 1.0 if name == "rsdl-masks" else iou >= 0.85


def test_the_obb_detector_finds_the_painted_rotated_rectangles(models):
    scene, objects = _obb_scene()
    decoder, outputs = _run(models["obb"], dm.normalized(scene))
    assert decoder.oriented and not decoder.has_masks
    found = decoder.decode(outputs, 0.3, 0.45, False, TILE)[0]
    assert len(found) == len(objects)
    painted = np.array([o.oriented for o in objects])
    order, expected = np.argsort(found.oriented[:, 0]), np.argsort(painted[:, 0])
    np.testing.assert_allclose(found.oriented[order], painted[expected], atol=1e-4)
    # The enclosing boxes hold the painted pixels.
    for index, object_index in zip(order, expected):
        x1, y1, x2, y2 = objects[object_index].box
        bx1, by1, bx2, by2 = found.boxes[index]
        assert bx1 <= x1 + 0.5 and by1 <= y1 + 0.5 and bx2 >= x2 - 0.5 and by2 >= y2 - 0.5


def test_seg_masks_match_torch_on_random_prototypes():
    """Random coefficients and prototypes, fractional boxes: the upsampling over the box alone equals
    torch's F.interpolate of the whole prototype grid, cut to the box."""
    rng = np.random.default_rng(7)
    nc, nm, anchors, tile = 2, 8, 50, 160
    prediction = np.zeros((1, 4 + nc + nm, anchors), dtype=np.float32)
    prediction[0, 0:2] = rng.uniform(0, tile, (2, anchors))
    prediction[0, 2:4] = rng.uniform(5, 60, (2, anchors))
    prediction[0, 4 : 4 + nc] = rng.uniform(0, 1, (nc, anchors))
    prediction[0, 4 + nc :] = rng.normal(0, 1, (nm, anchors))
    prototypes = rng.normal(0, 2, (1, nm, tile // 4, tile // 4)).astype(np.float32)
    spec = ModelSpec(class_names={0: "a", 1: "b"})
    decoder = ObjectDecoder(spec, [prediction.shape, prototypes.shape])
    ours = decoder.decode([prediction, prototypes], 0.2, 0.5, False, tile)[0]
    assert len(ours) > 5
    protos = torch.from_numpy(prototypes[0]).double()
    for mask, box, row in zip(ours.masks, ours.boxes, _rows_of(prediction, ours, nc)):
        coefficients = torch.from_numpy(prediction[0, 4 + nc :, row]).double()
        small = torch.sigmoid(coefficients @ protos.view(nm, -1)).view(tile // 4, tile // 4)
        scaled = torch.from_numpy(box) / 4
        cols = torch.arange(tile // 4, dtype=torch.float64)[None, :]
        rows = torch.arange(tile // 4, dtype=torch.float64)[:, None]
        small = small * ((cols >= scaled[0]) & (cols < scaled[2]) & (rows >= scaled[1]) & (rows < scaled[3]))
        full = (
            F.interpolate(small[None, None], (tile, tile), mode="bilinear", align_corners=False)[0, 0] > 0.5
        )
        cut = full.numpy()[
            mask.row0 : mask.row0 + mask.mask.shape[0], mask.col0 : mask.col0 + mask.mask.shape[1]
        ]
        assert mask.mask.shape == cut.shape
        assert np.count_nonzero(mask.mask != cut) <= 1  # float rounding at exactly 0.5 only


def _rows_of(prediction: np.ndarray, detections: Detections, nc: int) -> list[int]:
    """The prediction column each decoded box came from (boxes are unique here)."""
    p = prediction[0].T.astype(np.float64)
    boxes = np.clip(
        np.stack(
            [p[:, 0] - p[:, 2] / 2, p[:, 1] - p[:, 3] / 2, p[:, 0] + p[:, 2] / 2, p[:, 1] + p[:, 3] / 2], 1
        ),
        0,
        None,
    )
    return [
        int(np.argmin(np.abs(np.minimum(boxes, b.max()) - b).sum(1) + np.abs(p[:, 4 : 4 + nc].max(1) - s)))
        for b, s in zip(detections.boxes, detections.scores)
    ]


def test_v5_scores_are_objectness_times_class_and_yolo_v6_ignores_objectness():
    # One row: box (10, 10, 30, 20), objectness 0.5, class scores 0.2 and 0.8.
    row = np.array([[[20, 15, 20, 10, 0.5, 0.2, 0.8]]], dtype=np.float32)
    shape = (1, None, 7)  # as a model declares it: N dynamic
    v5 = ObjectDecoder(ModelSpec(), [shape]).decode([row], 0.3, 0.45, False, 64)[0]
    np.testing.assert_allclose(v5.scores, [0.4])
    assert v5.class_ids.tolist() == [1]
    np.testing.assert_allclose(v5.boxes, [[10, 10, 30, 20]])
    assert len(ObjectDecoder(ModelSpec(), [shape]).decode([row], 0.5, 0.45, False, 64)[0]) == 0
    v6 = ObjectDecoder(ModelSpec(det_type="YOLO_v6"), [shape]).decode([row], 0.5, 0.45, False, 64)[0]
    np.testing.assert_allclose(v6.scores, [0.8])


def test_boxes_are_clipped_to_the_tile_and_empty_ones_dropped():
    # cx, cy, w, h, score: one box over the tile's corner, one wholly outside it.
    prediction = np.array([[[60, 80], [-4, 20], [20, 10], [20, 10], [0.9, 0.9]]], dtype=np.float32)
    found = ObjectDecoder(ModelSpec(), [(1, 5, None)]).decode([prediction], 0.5, 0.5, False, 64)[0]
    np.testing.assert_allclose(found.boxes, [[50, 0, 64, 6]])


def test_empty_results_keep_their_kind(models):
    blank = dm.normalized(dm.blank_scene(64, 64))
    for name, oriented, masks in [("v8", False, False), ("obb", True, False), ("seg", False, True)]:
        decoder, outputs = _run(models[name], blank)
        found = decoder.decode(outputs, 0.1, 0.5, False, 64)[0]
        assert len(found) == 0 and found.is_oriented == oriented and found.has_masks == masks


def test_thresholds_default_to_the_model_then_ultralytics():
    assert detection_thresholds(ModelSpec()) == (DEFAULT_CONFIDENCE, DEFAULT_IOU_THRESHOLD) == (0.25, 0.45)
    deepness = ModelSpec(det_conf=0.6, det_iou_thresh=0.3)
    assert detection_thresholds(deepness) == (0.6, 0.3)
    assert detection_thresholds(deepness, 0.1, None) == (0.1, 0.3)
    assert detection_thresholds(deepness, 0.0, 0.9) == (0.0, 0.9)


def test_decode_without_thresholds_uses_the_models(tmp_path):
    path = dm.yolov8_detector(tmp_path / "strict.onnx", metadata={"det_conf": 0.9})
    scene, objects = _box_scene()
    decoder, outputs = _run(path, dm.normalized(scene))
    strict = decoder.decode(outputs, None, None, False, TILE)[0]
    loose = decoder.decode(outputs, 0.25, None, False, TILE)[0]
    assert np.all(strict.scores >= 0.9) and 0 < len(strict) < len(loose) == len(objects)


def test_decoder_properties(models):
    decoder, _ = _run(models["seg"], dm.normalized(dm.blank_scene(64, 64)))
    assert (decoder.class_count, decoder.has_masks, decoder.oriented) == (3, True, False)
    assert decoder.layout_name == "YOLO -seg layout, 3 classes, instance masks"


def test_a_scene_written_as_geotiff_reads_back(tmp_path):
    from osgeo import gdal

    scene, _ = _box_scene()
    path = dm.write_scene(tmp_path / "scene.tif", scene)
    dataset = gdal.Open(str(path))
    np.testing.assert_array_equal(dataset.ReadAsArray(), scene)
    assert dataset.GetGeoTransform() == (500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5)
