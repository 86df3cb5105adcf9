"""Object samples, batches and chip folders (training/data/objects.py).

The chip folders are written by hand in rsdl:exportchips's layout, their annotation records by the
exporter's own writers (core/datasets/object_chips.py: CocoSplit, yolo_label_text), so the tests
stay QGIS-free; the expected boxes are the hand-placed rectangles clipped to each chip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch

from rsdl_qgis_plugin.core.datasets.chip_folder import (
    coco_annotations_path,
    image_chip_path,
    yolo_label_path,
)
from rsdl_qgis_plugin.core.datasets.chips import ChipWindow, Split
from rsdl_qgis_plugin.core.datasets.object_chips import (
    CocoSplit,
    LabelObject,
    ObjectClasses,
    ObjectIndex,
    ObjectPart,
    yolo_label_text,
)
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import make_label_classes
from training.data import ObjectChipsDataModule, collate_objects
from training.data.objects import object_masks

CHIP = 64
CLASSES = make_label_classes({1: "house", 3: "tank"})
# (class value, x1, y1, x2, y2) in the scene's pixels; chips are 64 px at (row, col) below.
RECTANGLES = [(1, 4, 4, 20, 12), (3, 30, 40, 50, 60), (1, 50, 10, 80, 20), (3, 100, 8, 110, 30)]
CHIPS = {Split.TRAIN: [(0, 0), (0, 64)], Split.VAL: [(64, 0)]}
HOLED = (1, 8, 70, 40, 100, (16, 78, 28, 90))  # a house with a courtyard, in chip (64, 0)


def _objects() -> list[LabelObject]:
    objects = []
    for value, x1, y1, x2, y2 in RECTANGLES:
        ring = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=float)
        objects.append(LabelObject(value, (ObjectPart(ring),)))
    value, x1, y1, x2, y2, (hx1, hy1, hx2, hy2) = HOLED
    ring = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=float)
    hole = np.array([[hx1, hy1], [hx2, hy1], [hx2, hy2], [hx1, hy2]], dtype=float)
    objects.append(LabelObject(value, (ObjectPart(ring, (hole,)),)))
    return objects


def expected_boxes(row: int, col: int) -> list[tuple[int, list[float]]]:
    """Oracle: every rectangle clipped to the chip, kept when at least half of it is inside."""
    chip = shapely.box(col, row, col + CHIP, row + CHIP)
    rows = []
    for value, x1, y1, x2, y2 in [*RECTANGLES, HOLED[:5]]:
        box = shapely.box(x1, y1, x2, y2)
        inside = box.intersection(chip)
        if inside.area >= 0.5 * box.area and inside.area > 0:
            b = inside.bounds
            rows.append((value, [b[0] - col, b[1] - row, b[2] - col, b[3] - row]))
    return rows


def write_object_chips(root: Path, fmt: str) -> Path:
    """A chip folder of MODE objects: 3-band uint8 chips, COCO or YOLO annotations, dataset.json."""
    import rasterio
    from rasterio.transform import from_origin

    index = ObjectIndex(_objects(), 0.5)
    classes = ObjectClasses(CLASSES)
    rng = np.random.default_rng(0)
    for split, windows in CHIPS.items():
        coco = CocoSplit()
        for row, col in windows:
            window = ChipWindow(row, col, CHIP)
            path = root / image_chip_path(split, window.chip_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = {"driver": "GTiff", "width": CHIP, "height": CHIP, "count": 3, "dtype": "uint8"}
            transform = from_origin(500000 + col, 100000 - row, 1, 1)
            with rasterio.open(path, "w", crs="EPSG:32636", transform=transform, **profile) as target:
                target.write(rng.integers(0, 255, (3, CHIP, CHIP), dtype=np.uint8))
            objects = index.in_chip(window).objects
            if fmt == "coco":
                coco.add_chip(f"images/{window.chip_id}.tif", window, objects)
            else:
                label = root / yolo_label_path(split, window.chip_id)
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(yolo_label_text(objects, CHIP, classes), encoding="utf-8")
        if fmt == "coco":
            (root / coco_annotations_path(split)).write_text(json.dumps(coco.document(classes)))
    document = {
        "layout_version": 1,
        "mode": "objects",
        "chip_size": CHIP,
        "stride": CHIP,
        "image": {
            "path": "scene.tif",
            "band_count": 3,
            "dtype": "uint8",
            "nodata": [None] * 3,
            "crs_wkt": rasterio.crs.CRS.from_epsg(32636).to_wkt(),
            "geotransform": [500000, 1.0, 0.0, 100000, 0.0, -1.0],
        },
        "split": {"val_fraction": 0.3, "test_fraction": 0.0, "block_size": 64, "seed": 0},
        "objects": {"format": fmt, "min_visible_fraction": 0.5, "classes": classes.entries()},
    }
    (root / "dataset.json").write_text(json.dumps(document))
    return root


@pytest.fixture(scope="module", params=["coco", "yolo"])
def object_folder(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, write_object_chips(
        tmp_path_factory.mktemp(f"objects_{request.param}"), request.param
    )


def _module(root: Path, tmp_path: Path, **options) -> ObjectChipsDataModule:
    options.setdefault("augment", False)
    return ObjectChipsDataModule(str(root), batch_size=2, cache_dir=str(tmp_path / "cache"), **options)


def test_chip_folders_load_with_the_right_boxes(object_folder, tmp_path):
    fmt, root = object_folder
    module = _module(root, tmp_path)
    module.prepare_data()
    module.setup()
    assert module.format == fmt and module.object_task == "detection"
    assert module.class_table.values == (1, 3) and module.class_table.names == ("house", "tank")
    assert module.model_spec().model_type.value == "Detector" and module.model_spec().tile_size == CHIP
    assert module.num_classes == 2 and module.in_channels == 3
    tolerance = 1e-3 if fmt == "coco" else 1e-6 * CHIP  # records are rounded to 1/1000 px, YOLO to 1e-6
    for split, windows in CHIPS.items():
        dataset = module.datasets[split.value]
        assert len(dataset) == len(windows)
        for sample, (row, col) in zip(dataset, sorted(windows)):
            expected = expected_boxes(row, col)
            assert sample["chip_id"] == ChipWindow(row, col, CHIP).chip_id
            assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, CHIP, CHIP)
            assert sample["boxes"].dtype == torch.float32 and sample["class_ids"].dtype == torch.int64
            assert "masks" not in sample
            np.testing.assert_allclose(sample["boxes"].numpy(), [b for _, b in expected], atol=tolerance)
            assert sample["class_ids"].tolist() == [[1, 3].index(v) for v, _ in expected]
    # the house at x 50-80 shows 14 of 30 px in the first train chip (left out) and 16 in the second
    assert module.train_counts() == {1: 2, 3: 2}


def test_coco_polygons_become_instance_masks(object_folder, tmp_path):
    fmt, root = object_folder
    if fmt == "yolo":
        with pytest.raises(RsdlError, match="boxes only"):
            _module(root, tmp_path, task="instance")
        return
    module = _module(root, tmp_path, task="instance")
    module.setup()
    assert module.model_spec().model_type.value == "InstanceSegmentor"
    sample = module.datasets["val"][0]  # chip (64, 0): the holed house
    assert sample["masks"].dtype == torch.uint8 and sample["masks"].shape == (1, CHIP, CHIP)
    mask = sample["masks"][0].numpy()
    expected = np.zeros((CHIP, CHIP), dtype=np.uint8)
    expected[70 - 64 : 100 - 64, 8:40] = 1
    expected[78 - 64 : 90 - 64, 16:28] = 0  # the courtyard stays empty
    np.testing.assert_array_equal(mask, expected)
    for sample in module.datasets["train"]:
        for box, mask in zip(sample["boxes"].tolist(), sample["masks"].numpy()):
            rows, cols = np.nonzero(mask)
            assert [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] == pytest.approx(box, abs=1e-3)


def test_loaders_batch_with_collate_objects(object_folder, tmp_path):
    _, root = object_folder
    module = _module(root, tmp_path, augment=True)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, CHIP, CHIP)
    assert [t["boxes"].shape[0] for t in batch["targets"]] == [2, 2]
    assert set(batch["targets"][0]) == {"boxes", "class_ids"}
    assert len(batch["chip_id"]) == 2


def test_collate_keeps_objects_per_chip():
    items = [
        {
            "image": torch.zeros(3, 8, 8),
            "boxes": torch.zeros(n, 4),
            "class_ids": torch.zeros(n, dtype=torch.int64),
            "masks": torch.zeros(n, 8, 8, dtype=torch.uint8),
            "chip_id": str(n),
        }
        for n in (0, 3)
    ]
    batch = collate_objects(items)
    assert batch["image"].shape == (2, 3, 8, 8) and batch["chip_id"] == ["0", "3"]
    assert [t["masks"].shape for t in batch["targets"]] == [(0, 8, 8), (3, 8, 8)]


def test_object_masks_match_polygon_areas():
    rng = np.random.default_rng(5)
    for _ in range(20):
        center = rng.uniform(20, 44, 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radii = rng.uniform(6, 18, 9)
        ring = center + np.column_stack([np.cos(angles), np.sin(angles)]) * radii[:, None]
        polygon = shapely.Polygon(ring).intersection(shapely.box(0, 0, 64, 64))
        mask = object_masks([[ring.ravel().tolist()]], 64, 64)[0]
        assert abs(int(mask.sum()) - polygon.area) <= 0.03 * polygon.area


def test_folders_of_other_modes_are_refused(chips_folder, tmp_path):
    with pytest.raises(RsdlError, match="mode 'objects'"):
        ObjectChipsDataModule(str(chips_folder), cache_dir=str(tmp_path))


def test_the_training_split_gets_the_object_augmentation(object_folder, tmp_path):
    from training.data.objects_augment import ObjectAugment

    _, root = object_folder
    module = _module(root, tmp_path, augment=True)
    module.setup("fit")
    assert isinstance(module.augment, ObjectAugment)  # moves boxes and masks, not only pixels
    assert module.datasets["train"].augment is module.augment and module.datasets["val"].augment is None
    assert _module(root, tmp_path, augment=False).augment is None
