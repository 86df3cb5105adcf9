"""Object chips without QGIS (core/datasets/object_chips.py): pixel transforms, clipping,
visibility and the COCO, YOLO and Pascal VOC records, against hand-checked numbers (and
pycocotools where it is installed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from rsdl_qgis_plugin.core.datasets.chips import ChipWindow, Split
from rsdl_qgis_plugin.core.datasets.object_chips import (
    ChipObjects,
    CocoSplit,
    LabelObject,
    ObjectClasses,
    ObjectIndex,
    ObjectPart,
    ObjectSettings,
    ObjectTally,
    clip_object,
    clip_ring,
    map_to_pixel,
    object_report_lines,
    pixel_to_map,
    ring_area,
    voc_annotation_xml,
    yolo_data_yaml,
    yolo_label_text,
)
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass


def square(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def box_object(x1: float, y1: float, x2: float, y2: float, value: int = 1) -> LabelObject:
    return LabelObject(value, (ObjectPart(square(x1, y1, x2, y2)),))


CLASSES = ObjectClasses([LabelClass(7, "tree", "#00ff00"), LabelClass(2, "building", "#ff0000")])
# A U: 6 wide, 6 high, with a 2 x 4 notch from the top (y runs down): area 36 - 8 = 28.
U_SHAPE = np.array([[0, 0], [2, 0], [2, 4], [4, 4], [4, 0], [6, 0], [6, 6], [0, 6]], dtype=np.float64)
# A 10 x 10 square with a 2 x 2 hole: area 96.
HOLED = LabelObject(2, (ObjectPart(square(0, 0, 10, 10), (square(2, 2, 4, 4),)),))


def test_pixel_transforms_follow_the_geotransform():
    geotransform = (500000.0, 0.5, 0.0, 6000000.0, 0.0, -0.25)
    pixels = map_to_pixel(geotransform, [[500001.0, 5999999.0], [500000.0, 6000000.0]])
    assert pixels.tolist() == [[2.0, 4.0], [0.0, 0.0]]  # 1 m east = 2 columns, 1 m south = 4 rows
    assert np.allclose(pixel_to_map(geotransform, pixels), [[500001.0, 5999999.0], [500000.0, 6000000.0]])


def test_ring_area_open_or_closed():
    assert ring_area(square(1, 1, 5, 3)) == 8.0
    assert ring_area(np.vstack([square(1, 1, 5, 3), [[1, 1]]])) == 8.0
    assert ring_area(U_SHAPE) == 28.0 and ring_area(U_SHAPE[::-1]) == 28.0


def test_clip_ring_cuts_to_the_rectangle():
    assert ring_area(clip_ring(square(8, 8, 12, 12), 0, 0, 10, 10)) == 4.0
    assert clip_ring(square(20, 20, 30, 30), 0, 0, 10, 10).shape == (0, 2)
    # The U cut below its notch (rows 0..3 dropped) leaves... the full bottom bar 6 x 2 plus the
    # arms 2 x 1 each between rows 3 and 4: 12 + 2 + 2 = 16.
    clipped = clip_ring(U_SHAPE, 0, 3, 6, 10)
    assert ring_area(clipped) == 16.0
    # Cut above the bottom bar (rows 0..3 kept): two separate arms, 2 x 3 each, one ring with a
    # zero-width run along the edge: area 12, bounding box of both arms.
    arms = clip_ring(U_SHAPE, -1, -1, 7, 3)
    assert ring_area(arms) == 12.0
    assert arms.min(axis=0).tolist() == [0, 0] and arms.max(axis=0).tolist() == [6, 3]


def test_clip_object_box_area_and_visibility():
    obj = box_object(8, 8, 12, 12)
    assert obj.area == 16.0 and obj.bounds == (8.0, 8.0, 12.0, 12.0)
    corner = clip_object(obj, ChipWindow(0, 0, 10), 0.25)
    assert corner is not None
    assert corner.box == (8.0, 8.0, 10.0, 10.0) and corner.area == 4.0 and corner.visible_fraction == 0.25
    assert corner.truncated
    assert clip_object(obj, ChipWindow(0, 0, 10), 0.26) is None  # a quarter is not enough
    # A chip at row 5, column 6 holds the whole box, in its own pixels.
    inside = clip_object(obj, ChipWindow(5, 6, 10), 1.0)
    assert inside is not None and inside.box == (2.0, 3.0, 6.0, 7.0) and not inside.truncated
    assert clip_object(obj, ChipWindow(12, 0, 10), 0.0) is None  # only touches the chip's edge


def test_multipolygon_is_one_object():
    obj = LabelObject(1, (ObjectPart(square(0, 0, 4, 4)), ObjectPart(square(20, 0, 24, 2))))
    assert obj.area == 24.0 and obj.bounds == (0.0, 0.0, 24.0, 4.0)
    left = clip_object(obj, ChipWindow(0, 0, 10), 0.5)
    assert left is not None and left.visible_fraction == pytest.approx(16 / 24) and len(left.polygons) == 1
    both = clip_object(obj, ChipWindow(0, 0, 30), 1.0)
    assert both is not None and both.box == (0.0, 0.0, 24.0, 4.0) and len(both.polygons) == 2


def test_holes_are_subtracted_and_joined_into_the_ring():
    assert HOLED.area == 96.0
    whole = clip_object(HOLED, ChipWindow(0, 0, 20), 1.0)
    assert whole is not None and whole.area == 96.0 and len(whole.polygons) == 1
    assert ring_area(whole.polygons[0]) == 96.0  # the hole runs the other way round
    # Chip from column 3: the hole's right half and the square's 7 columns: 70 - 2 = 68.
    right = clip_object(HOLED, ChipWindow(0, 3, 20), 0.5)
    assert right is not None and right.area == 68.0 and right.visible_fraction == pytest.approx(68 / 96)
    assert right.box == (0.0, 0.0, 7.0, 10.0)


def test_index_finds_objects_per_chip_and_counts_those_left_out():
    objects = [box_object(8, 8, 12, 12), box_object(1, 1, 3, 3, value=2), box_object(40, 40, 50, 50)]
    index = ObjectIndex(objects, 0.5)
    found = index.in_chip(ChipWindow(0, 0, 10))
    assert [o.class_value for o in found.objects] == [2] and found.dropped == 1  # the corner box: 1/4
    found = index.in_chip(ChipWindow(5, 5, 10))
    assert [o.box for o in found.objects] == [(3.0, 3.0, 7.0, 7.0)] and found.dropped == 0
    assert index.in_chip(ChipWindow(20, 20, 10)) == ChipObjects([], 0)
    assert len(ObjectIndex([*objects, LabelObject(1, (ObjectPart(square(0, 0, 0, 5)),))], 0.5)) == 3


def test_settings_refuse_fractions_outside_0_1():
    with pytest.raises(RsdlError, match="MIN_VISIBLE_FRACTION must be between 0 and 1"):
        ObjectSettings(min_visible_fraction=1.5)


def coco_document() -> dict:
    coco = CocoSplit()
    window = ChipWindow(0, 0, 10)
    corner = clip_object(box_object(8, 8, 12, 12, value=7), window, 0.0)
    holed = clip_object(HOLED, ChipWindow(0, 0, 10), 0.0)
    coco.add_chip("images/r000000_c000000.tif", window, [corner, holed])
    coco.add_chip("images/r000000_c000010.tif", ChipWindow(0, 10, 10), [])
    return coco.document(CLASSES)


def test_coco_records():
    document = json.loads(json.dumps(coco_document()))  # JSON-native
    assert document["categories"] == [
        {"id": 2, "name": "building", "supercategory": "object"},
        {"id": 7, "name": "tree", "supercategory": "object"},
    ]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in document["images"]] == [
        (1, "images/r000000_c000000.tif", 10, 10),
        (2, "images/r000000_c000010.tif", 10, 10),
    ]
    corner, holed = document["annotations"]
    assert corner == {
        "id": 1,
        "image_id": 1,
        "category_id": 7,
        "bbox": [8.0, 8.0, 2.0, 2.0],
        "area": 4.0,
        "iscrowd": 0,
        "segmentation": [[8.0, 10.0, 8.0, 8.0, 10.0, 8.0, 10.0, 10.0]],
    }
    assert (holed["id"], holed["category_id"], holed["bbox"], holed["area"]) == (2, 2, [0, 0, 10, 10], 96.0)


def test_pycocotools_reads_the_coco_records(tmp_path):
    coco_module = pytest.importorskip("pycocotools.coco")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(coco_document()))
    coco = coco_module.COCO(str(path))
    assert coco.getImgIds() == [1, 2] and coco.getCatIds() == [2, 7]
    corner, holed = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert coco.annToMask(corner).sum() == 4
    mask = coco.annToMask(holed)
    assert mask.sum() == 96 and not mask[2:4, 2:4].any()  # the hole stays empty


def test_yolo_lines_and_data_yaml():
    objects = [
        clip_object(box_object(10, 20, 30, 60, value=7), ChipWindow(0, 0, 100), 1.0),
        clip_object(box_object(90, 0, 110, 10, value=2), ChipWindow(0, 0, 100), 0.5),
    ]
    assert yolo_label_text(objects, 100, CLASSES) == (
        "1 0.200000 0.400000 0.200000 0.400000\n0 0.950000 0.050000 0.100000 0.100000\n"
    )
    assert yolo_label_text([], 100, CLASSES) == ""
    assert yolo_data_yaml(CLASSES, [Split.TRAIN, Split.VAL]) == (
        'train: train/images\nval: val/images\nnc: 2\nnames:\n  0: "building"\n  1: "tree"\n'
    )


def test_voc_xml():
    objects = [
        clip_object(box_object(10, 20, 30, 60, value=7), ChipWindow(0, 0, 100), 1.0),
        clip_object(box_object(90, 0, 110.5, 10, value=2), ChipWindow(0, 0, 100), 0.3),
    ]
    root = ElementTree.fromstring(voc_annotation_xml("r1.tif", "images", 100, 3, objects, CLASSES))
    assert (root.findtext("filename"), root.findtext("folder")) == ("r1.tif", "images")
    assert [root.findtext(f"size/{k}") for k in ("width", "height", "depth")] == ["100", "100", "3"]
    rows = [
        (
            o.findtext("name"),
            o.findtext("truncated"),
            *(o.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")),
        )
        for o in root.iter("object")
    ]
    assert rows == [("tree", "0", "10", "20", "30", "60"), ("building", "1", "90", "0", "100", "10")]


def test_tally_and_report():
    tally = ObjectTally()
    tree = clip_object(box_object(1, 1, 3, 3, value=7), ChipWindow(0, 0, 10), 1.0)
    tally.add(Split.TRAIN, ChipObjects([tree, tree], dropped=1))
    tally.add(Split.VAL, ChipObjects([tree], dropped=2))
    assert tally.counts(CLASSES) == {
        "train": {"tree": 2},
        "val": {"tree": 1},
        "test": {},
        "total": 3,
        "dropped_mostly_outside": 3,
    }
    lines = object_report_lines(tally, CLASSES, without_area=4)
    assert [line.text for line in lines[:2]] == [
        "Objects in 'train': 2 (tree 2)",
        "Objects in 'val': 1 (tree 1)",
    ]
    assert "3 times" in lines[2].text and lines[3].warning and "BUFFER_WIDTH" in lines[3].text
