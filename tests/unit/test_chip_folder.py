"""The on-disk layout of a chip dataset (core/datasets/chip_folder.py): paths, class folders and
dataset.json, written as rsdl:exportchips writes it and read back as training reads it."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import numpy as np
import pytest

from rsdl_qgis_plugin.core.datasets.chip_folder import (
    BACKGROUND_COLOR,
    BACKGROUND_NAME,
    DATASET_FILE,
    INDEX_FILE,
    LAYOUT_VERSION,
    ChipRecord,
    ClassFolders,
    class_entries,
    classification_chip_path,
    coco_annotations_path,
    dataset_document,
    image_chip_path,
    load_dataset_document,
    mask_chip_path,
    pixel_field,
    safe_folder_name,
    voc_annotation_path,
    yolo_label_path,
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
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics

# The keys that the module's docstring promises in dataset.json.
DOCUMENTED_KEYS = {
    "layout_version",
    "mode",
    "chip_size",
    "stride",
    "image",
    "labels",
    "classes",
    "background_value",
    "ignore_value",
    "split",
    "keep_empty",
    "min_cover",
    "counts",
    "classification_counts",
    "statistics",
    "index",
}
CLASSES = [LabelClass(1, "Low / vegetation", "#1b7837"), LabelClass(2, "water", "#1f78b4")]


def statistics_of(*values: int) -> ClassStatistics:
    statistics = ClassStatistics(255)
    statistics.add_block(np.array(values, dtype=np.uint8))
    return statistics


def exported_document(values: MaskValues, mode: ChipMode = ChipMode.BOTH) -> dict:
    """dataset_document as rsdl:exportchips calls it, after two written chips and one dropped."""
    rules = ChipRules(mode, None if values.unlabelled_is_ignore else values.background_value)
    names = {c.value: c.name for c in CLASSES}
    folders = ClassFolders(names) if mode.writes_classification else None
    tally = ChipTally(values.ignore_value, classification=mode.writes_classification)
    tally.add(ChipDecision(ChipOutcome.WRITTEN, 2), Split.TRAIN, statistics_of(2, 2, 0))
    tally.add(ChipDecision(ChipOutcome.WRITTEN, 1), Split.VAL, statistics_of(1, 255))
    tally.add(ChipDecision(ChipOutcome.NODATA))
    return dataset_document(
        rules=rules,
        chip_size=64,
        stride=32,
        split=SplitSettings(0.2, 0.1, 128, 7),
        block_counts={"train": 7, "val": 2, "test": 1},
        image={"path": "scene.tif", "width": 512, "height": 384, "geotransform": [0, 0.5, 0, 0, 0, -0.5]},
        labels={"mask": None, "layers": ["labels.gpkg|layername=roofs"], "dtype": "uint8"},
        classes=CLASSES,
        values=values,
        folders=folders,
        tally=tally,
        statistics={"train": {"chips": 1}},
    )


def test_document_round_trips_through_dataset_json(tmp_path):
    document = exported_document(MaskValues(background_value=0, ignore_value=255))
    (tmp_path / DATASET_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")

    loaded = load_dataset_document(tmp_path)

    assert loaded == document  # JSON-native through and through: no enum, tuple or int key
    assert set(loaded) == DOCUMENTED_KEYS
    assert loaded["layout_version"] == LAYOUT_VERSION and loaded["index"] == INDEX_FILE
    assert (loaded["mode"], loaded["chip_size"], loaded["stride"]) == ("both", 64, 32)
    assert (loaded["background_value"], loaded["ignore_value"]) == (0, 255)
    assert loaded["split"] == {
        "val_fraction": 0.2,
        "test_fraction": 0.1,
        "block_size": 128,
        "seed": 7,
        "blocks": {"train": 7, "val": 2, "test": 1},
    }
    assert loaded["classes"] == [
        {"value": 0, "name": BACKGROUND_NAME, "color": BACKGROUND_COLOR, "folder": "background"},
        {"value": 1, "name": "Low / vegetation", "color": "#1b7837", "folder": "Low_vegetation"},
        {"value": 2, "name": "water", "color": "#1f78b4", "folder": "water"},
    ]
    assert loaded["counts"]["train"] == loaded["counts"]["val"] == 1 and loaded["counts"]["total"] == 2
    assert loaded["counts"]["skipped_nodata"] == 1
    assert loaded["classification_counts"] == {"train": {"water": 1}, "val": {"Low_vegetation": 1}}


def test_object_chips_add_their_entry_and_paths():
    values = MaskValues(background_value=0, ignore_value=255)
    assert "objects" not in exported_document(values)
    rules = ChipRules(ChipMode.OBJECTS, 0)
    document = dataset_document(
        rules=rules,
        chip_size=64,
        stride=64,
        split=SplitSettings(0.2, 0.0, 128, 7),
        block_counts={"train": 4, "val": 1, "test": 0},
        image={},
        labels={},
        classes=CLASSES,
        values=values,
        folders=None,
        tally=ChipTally(255),
        statistics={},
        objects={"format": "coco"},
    )
    assert document["mode"] == "objects" and document["objects"] == {"format": "coco"}
    assert set(document) == DOCUMENTED_KEYS | {"objects"}
    assert coco_annotations_path(Split.VAL) == "val/annotations.json"
    assert yolo_label_path(Split.TRAIN, "r000000_c000064") == "train/labels/r000000_c000064.txt"
    assert voc_annotation_path(Split.TEST, "r1") == "test/annotations/r1.xml"


def test_sparse_labels_have_no_background_class_and_segmentation_no_folders():
    document = exported_document(
        MaskValues(background_value=0, ignore_value=0, unlabelled_is_ignore=True), ChipMode.SEGMENTATION
    )
    assert document["background_value"] is None and document["ignore_value"] == 0
    assert [c["value"] for c in document["classes"]] == [1, 2]
    assert all("folder" not in c for c in document["classes"])
    assert document["mode"] == "segmentation" and document["classification_counts"] == {}


def test_a_class_named_at_the_background_value_keeps_its_name():
    entries = class_entries([LabelClass(0, "bare soil", "#a6761d")], MaskValues(0, 255), None)
    assert entries == [{"value": 0, "name": "bare soil", "color": "#a6761d"}]


# --- refusals --------------------------------------------------------------------------------


def test_a_folder_without_dataset_json_is_refused_naming_it(tmp_path):
    with pytest.raises(
        RsdlError, match=re.escape(f"'{tmp_path}' is not a chip dataset: it has no dataset.json")
    ):
        load_dataset_document(tmp_path)
    (tmp_path / DATASET_FILE).mkdir()  # a folder of that name is no document either
    with pytest.raises(RsdlError, match=r"no dataset\.json"):
        load_dataset_document(tmp_path)


@pytest.mark.parametrize("version", [LAYOUT_VERSION + 1, 0, None, "1"])
def test_a_newer_or_unknown_layout_version_is_refused_with_the_way_out(tmp_path, version):
    document = exported_document(MaskValues())
    document["layout_version"] = version
    (tmp_path / DATASET_FILE).write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(RsdlError) as caught:
        load_dataset_document(tmp_path)
    message = str(caught.value)
    assert f"layout version {version}" in message and f"reads version {LAYOUT_VERSION}" in message
    assert "Export the chips again" in message and str(tmp_path) in message


def test_a_document_without_a_version_is_refused(tmp_path):
    (tmp_path / DATASET_FILE).write_text(json.dumps({"chip_size": 64}), encoding="utf-8")
    with pytest.raises(RsdlError, match="layout version None"):
        load_dataset_document(tmp_path)


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", list(Split))
def test_chip_paths_are_relative_posix_paths_under_their_split(split):
    chip_id = ChipWindow(128, 64, 64).chip_id
    image = PurePosixPath(image_chip_path(split, chip_id))
    mask = PurePosixPath(mask_chip_path(split, chip_id))
    classified = PurePosixPath(classification_chip_path(split, "water", chip_id))
    assert image.parts == (split.value, "images", "r000128_c000064.tif")
    assert mask.parts == (split.value, "masks", "r000128_c000064.tif")
    assert classified.parts == ("classification", split.value, "water", "r000128_c000064.tif")
    assert not any(p.is_absolute() or "\\" in str(p) for p in (image, mask, classified))
    # an image chip and its mask share the file name, so one finds the other
    assert image.name == mask.name and image.parent.parent == mask.parent.parent


def test_paths_of_different_splits_never_collide():
    paths = {
        make(split, "r000000_c000000")
        for split in Split
        for make in (image_chip_path, mask_chip_path, lambda s, c: classification_chip_path(s, "x", c))
    }
    assert len(paths) == 3 * len(Split)


@pytest.mark.parametrize("name", ["../../etc", "a/b", "C:\\temp", " ", "Wasser / Gewässer", "..", "x\x00y"])
def test_safe_folder_names_stay_inside_the_dataset(tmp_path, name):
    folder = safe_folder_name(name)
    assert folder and folder not in {".", ".."}
    assert set(folder) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    path = (tmp_path / classification_chip_path(Split.TRAIN, folder, "r1")).resolve()
    assert path.is_relative_to(tmp_path.resolve() / "classification" / "train")


def test_pixel_fields_and_chip_record_fractions():
    assert pixel_field(0) == "px_0" and pixel_field(70000) == "px_70000"
    record = ChipRecord(
        ChipWindow(0, 0, 8), Split.TRAIN, "train/images/a.tif", "train/masks/a.tif", None, None, None,
        counts={0: 40, 1: 8}, ignored=16,
    )  # fmt: skip
    assert record.labelled_fraction == 48 / 64 and record.ignored_fraction == 16 / 64


def test_layout_paths_and_class_folders():
    assert image_chip_path(Split.VAL, "r000000_c000064") == "val/images/r000000_c000064.tif"
    assert mask_chip_path(Split.TEST, "r1") == "test/masks/r1.tif"
    assert classification_chip_path(Split.TRAIN, "water", "r1") == "classification/train/water/r1.tif"
    assert ChipWindow(256, 1024, 256).chip_id == "r000256_c001024"
    assert safe_folder_name(" Low / vegetation ") == "Low_vegetation"
    assert safe_folder_name("../..") == "class"
    folders = ClassFolders({0: "background", 1: "a b", 2: "a/b", 3: "water"})
    assert folders.as_dict() == {0: "background", 1: "a_b", 2: "a_b_2", 3: "water"}
    assert folders.folder(7) == "class_7"
    assert folders.folder(1, "renamed") == "a_b"  # never changes once given


def test_load_dataset_document_checks_the_version(tmp_path):
    with pytest.raises(RsdlError, match=r"no dataset\.json"):
        load_dataset_document(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"layout_version": 99}))
    with pytest.raises(RsdlError, match="layout version 99"):
        load_dataset_document(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"layout_version": LAYOUT_VERSION, "chip_size": 8}))
    assert load_dataset_document(tmp_path)["chip_size"] == 8


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", b"\xff\xfe"])
def test_a_broken_description_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / DATASET_FILE
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(RsdlError, match=rf"'{re.escape(str(path))}' .*export the chips again"):
        load_dataset_document(tmp_path)
