"""RasterObjectsDataModule (training/data/raster_objects.py) on the real YELL tree boxes and Kampala
buildings: boxes against the source boxes moved to chip pixels, masks against OGR's polygon areas,
the spatial split, and the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch

from rsdl_qgis_plugin.core.datasets.chips import ChipWindow
from training.data import RasterObjectsDataModule, raster_objects

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TREES = SHARED / "deepforest_trees"
YELL = TREES / "2019_YELL_2_541000_4977000_image_crop.tif"
YELL_BOXES = TREES / "2019_YELL_2_541000_4977000_image_crop_boxes.gpkg"
KAMPALA = SHARED / "fair_kampala_buildings"
CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real data (../shared/data) is absent")


def _footprints(module: RasterObjectsDataModule, split: str) -> list[shapely.Polygon]:
    boxes = []
    for number, row, col in module.index["chips"][split]:
        left, top, right, bottom = module.rasters[number].footprint(ChipWindow(row, col, module.chip_size))
        boxes.append(shapely.box(left, bottom, right, top))
    return boxes


def _overlap_area(first: list, second: list) -> float:
    tree = shapely.STRtree(second)
    return sum(
        shapely.intersection(box, second[i]).area
        for box in first
        for i in tree.query(box, predicate="intersects")
    )


def _voc_boxes() -> tuple[np.ndarray, list[str]]:
    """The source's own pixel boxes (the VOC fields xmin, ymin, xmax, ymax) and labels, via OGR."""
    from osgeo import ogr

    dataset = ogr.Open(str(YELL_BOXES))
    boxes, labels = [], []
    for feature in dataset.GetLayerByName("trees"):
        boxes.append([feature.GetField(k) for k in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(feature.GetField("label"))
    return np.asarray(boxes, dtype=np.float64), labels


def _trees(cache: Path, **options) -> RasterObjectsDataModule:
    arguments = dict(field="label", chip_size=256, block_size=768, val_fraction=0.25, test_fraction=0.25)
    arguments.update(seed=0, batch_size=4, augment=False, cache_dir=str(cache))
    arguments.update(options)
    return RasterObjectsDataModule(str(YELL), f"{YELL_BOXES}|layername=trees", **arguments)


@needs_data
def test_tree_boxes_reproduce_the_source_boxes(tmp_path):
    module = _trees(tmp_path, stride=200)  # overlapping chips: boxes cut by chip edges
    module.prepare_data()
    module.setup()
    assert module.class_table.names == ("Tree",) and module.object_task == "detection"
    voc, labels = _voc_boxes()
    assert set(labels) == {"Tree"}
    areas = (voc[:, 2] - voc[:, 0]) * (voc[:, 3] - voc[:, 1])
    clipped_somewhere = 0
    for split in ("train", "val", "test"):
        dataset = module.datasets[split]
        assert len(dataset) > 0
        for (_, row, col), sample in zip(module.index["chips"][split], dataset):
            # oracle: each source box moved to chip pixels, clipped, kept when >= half is inside
            moved = voc - [col, row, col, row]
            clipped = np.clip(moved, 0, module.chip_size)
            inside = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(
                clipped[:, 3] - clipped[:, 1], 0, None
            )
            # map -> pixel arithmetic leaves float noise: objects at exactly half may go either way
            strict = (inside > 0) & (inside >= 0.5 * areas * (1 + 1e-6))
            loose = (inside > 0) & (inside >= 0.5 * areas * (1 - 1e-6))
            got = sample["boxes"].numpy().astype(np.float64)
            assert strict.sum() <= len(got) <= loose.sum(), sample["chip_id"]
            distance = np.abs(got[:, None, :] - clipped[None, loose, :]).max(axis=-1)
            assert (distance.min(axis=1) <= 1e-4).all()  # every box is a source box, moved and clipped
            distance = np.abs(got[:, None, :] - clipped[None, strict, :]).max(axis=-1)
            assert (distance.min(axis=0, initial=np.inf) <= 1e-4).all() or not strict.any()
            keep = strict
            assert (sample["class_ids"] == 0).all() and "masks" not in sample
            clipped_somewhere += int((keep & (inside < areas)).sum())
    assert clipped_somewhere > 10  # the rule for boxes cut by chip edges was exercised


@needs_data
def test_splits_share_no_ground(tmp_path):
    module = _trees(tmp_path, stride=128)
    module.prepare_data()
    footprints = {split: _footprints(module, split) for split in ("train", "val", "test")}
    assert all(footprints.values())
    assert _overlap_area(footprints["train"], footprints["val"]) == 0.0
    assert _overlap_area(footprints["train"], footprints["test"]) == 0.0
    assert _overlap_area(footprints["val"], footprints["test"]) == 0.0
    assert module.model_spec().training["split"]["blocks"] == {"train": 2, "val": 1, "test": 1}


def _kampala_oracle(module: RasterObjectsDataModule, number: int, row: int, col: int) -> list[float]:
    """OGR: every building in the tile's CRS and pixels, clipped to the chip; areas (px²) of those
    with at least half their area inside."""
    from osgeo import ogr, osr

    raster = module.rasters[number]
    a, _, c, _, e, f = raster.transform
    target = osr.SpatialReference(wkt=raster.crs_wkt)
    dataset = ogr.Open(str(KAMPALA / "buildings.geojson"))
    layer = dataset.GetLayer(0)
    source = layer.GetSpatialRef().Clone()
    source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    x0, y0 = c + a * col, f + e * row
    size = module.chip_size
    chip = ogr.CreateGeometryFromWkt(shapely.box(x0, y0 + e * size, x0 + a * size, y0).wkt)
    areas = []
    for feature in layer:
        geometry = feature.GetGeometryRef().Clone()
        geometry.Transform(transform)
        geometry = geometry.MakeValid()
        whole = geometry.GetArea()
        inside = geometry.Intersection(chip).GetArea()
        if inside > 0 and inside >= 0.5 * whole:
            areas.append(inside / (a * a))
    return sorted(areas)


@needs_data
def test_kampala_masks_match_the_polygons(tmp_path):
    module = RasterObjectsDataModule(
        str(KAMPALA / "tiles" / "OAM-*.tif"),
        str(KAMPALA / "buildings.geojson"),
        task="instance",
        burn_value=1,
        chip_size=256,
        block_size=1024,
        val_fraction=0.2,
        augment=False,
        cache_dir=str(tmp_path),
    )
    module.setup()
    assert module.model_spec().model_type.value == "InstanceSegmentor"
    dataset = module.datasets["train"]
    checked = 0
    for index, (number, row, col) in enumerate(module.index["chips"]["train"]):
        if not module.index["objects"]["train"][index]:
            continue
        sample = dataset[index]
        masks = sample["masks"].numpy()
        assert masks.dtype == np.uint8 and masks.shape[1:] == (256, 256)
        mask_areas = masks.reshape(len(masks), -1).sum(axis=1)
        expected = _kampala_oracle(module, number, row, col)
        assert len(mask_areas) == len(expected), sample["chip_id"]
        assert abs(mask_areas.sum() - sum(expected)) <= 0.01 * sum(expected)
        for got, want in zip(sorted(mask_areas), expected):
            assert abs(got - want) <= max(0.01 * want, 20), sample["chip_id"]
        for box, mask in zip(sample["boxes"].numpy(), masks):  # each box is its mask's box
            rows, cols = np.nonzero(mask)
            assert np.abs([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] - box).max() <= 1.0
        checked += 1
        if checked == 12:
            break
    assert checked == 12


# -- the cache ------------------------------------------------------------------------------------


def _scene_module(labels: Path, raster: Path, cache: Path) -> RasterObjectsDataModule:
    return RasterObjectsDataModule(
        str(raster),
        str(labels),
        task="instance",
        field="kind",
        chip_size=32,
        block_size=64,
        val_fraction=0.25,
        cache_dir=str(cache),
    )


def test_cache_is_reused_and_rebuilt_when_labels_change(vector_scene, tmp_path, monkeypatch):
    labels = tmp_path / "labels.geojson"
    shutil.copy(vector_scene["labels"], labels)
    first = _scene_module(labels, vector_scene["raster"], tmp_path / "cache")
    first.prepare_data()
    assert first.index_path.is_file()
    assert first.class_table.names == ("building", "water")
    counts = first.object_counts()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the chip index was built again")

    monkeypatch.setattr(raster_objects, "build_chip_index", no_rebuild)
    second = _scene_module(labels, vector_scene["raster"], tmp_path / "cache")
    second.prepare_data()
    assert second.index_path == first.index_path and second.object_counts() == counts

    document = json.loads(labels.read_text())
    document["features"] = [f for f in document["features"] if f["properties"]["kind"] == "water"] + [
        f for f in document["features"] if f["properties"]["kind"] == "building"
    ][:1]
    labels.write_text(json.dumps(document))
    changed = _scene_module(labels, vector_scene["raster"], tmp_path / "cache")
    assert changed.index_path != first.index_path
    with pytest.raises(AssertionError, match="built again"):
        changed.prepare_data()
    monkeypatch.undo()
    changed = _scene_module(labels, vector_scene["raster"], tmp_path / "cache")
    changed.prepare_data()
    total = lambda c: sum(sum(per_class.values()) for per_class in c.values())  # noqa: E731
    assert total(changed.object_counts()) < total(counts)


def test_scene_items_match_the_interface(vector_scene, tmp_path):
    module = _scene_module(vector_scene["labels"], vector_scene["raster"], tmp_path)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, 32, 32)
    for target in batch["targets"]:
        n = len(target["boxes"])
        assert target["boxes"].shape == (n, 4) and target["class_ids"].shape == (n,)
        assert target["masks"].shape == (n, 32, 32) and target["masks"].dtype == torch.uint8
        assert target["class_ids"].dtype == torch.int64 and set(target["class_ids"].tolist()) <= {0, 1}
    spec = module.model_spec()
    assert spec.class_names == {0: "building", 1: "water"} and spec.ignore_index is None


# -- the shipped configs' data sections ---------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("name", ["trees_neon", "kampala_instances"])
def test_config_data_sections_build(name, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(CONFIGS.parents[1])  # the configs' paths are relative to the repository
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert config["data"]["class_path"] == "training.data.RasterObjectsDataModule"
    assert config["model"]["class_path"] == "training.tasks.DetectionTask"
    arguments = {**config["data"]["init_args"], "cache_dir": str(tmp_path), "num_workers": 0}
    module = RasterObjectsDataModule(**arguments)
    module.prepare_data()
    counts = module.index["counts"]
    assert counts["train"] > 0 and counts["val"] > 0
    assert module.object_counts()["val"]
