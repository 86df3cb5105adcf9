"""The on-disk layout of a chip dataset (rsdl:exportchips writes it, training reads it).

Layout version 1::

    <OUTPUT>/
      dataset.json                      the dataset description (keys below); read it first
      index.gpkg                        layer "chips": one polygon per written chip (image CRS)
      train/images/<chip_id>.tif        segmentation image chip   (MODE segmentation or both)
      train/masks/<chip_id>.tif         its label mask chip
      val/images/...  val/masks/...
      test/images/... test/masks/...
      classification/train/<class>/<chip_id>.tif   classification chip (MODE classification or both)
      classification/val/<class>/...
      classification/test/<class>/...
      train/annotations.json            COCO annotations of train/images (MODE objects, COCO)
      train/labels/<chip_id>.txt        YOLO labels of an image chip    (MODE objects, YOLO)
      data.yaml                         YOLO data set file (Ultralytics)
      train/annotations/<chip_id>.xml   Pascal VOC annotation of a chip (MODE objects, VOC)
      val/... test/...                  the same for the other splits

Folders exist only where they hold chips. ``chip_id`` is ``r<row>_c<col>``: the chip's
top-left pixel in the source image, zero-padded to 6 digits. ``<class>`` is the class name made
safe for file names (letters, digits, ``-``, ``_``); ``background`` for chips without any
foreground pixel; the folder of every class is listed in dataset.json.

Image chips are GeoTIFFs with the source's data type, band count, per-band nodata and colour
interpretation, its CRS, and its geotransform shifted by the chip's offset. Mask chips have one
band of the mask's data type, the ignore value as nodata, and the mask's colour table and
metadata; pixels where the image is nodata in any band hold the ignore value. Chips are single
files (no .aux.xml).

Object chips (MODE objects) are image chips without masks; their annotations follow
core/datasets/object_chips.py. COCO ``file_name`` is relative to the annotations file's folder
(``images/<chip_id>.tif``); every written chip has a YOLO .txt or VOC .xml, empty chips too.

Index fields: ``chip_id``, ``split``, ``row_off``, ``col_off``, ``size`` (pixels); ``image``,
``mask``, ``class_image`` (paths relative to the dataset folder with ``/``, NULL when not
written); ``chip_class`` and ``class_value`` (classification class, NULL when none);
``labelled_frac`` and ``ignored_frac`` (shares of the chip's pixels); ``px_<value>``: pixels of
each class value, background included; ``objects`` (MODE objects only): objects in the chip.

dataset.json keys: ``layout_version``, ``mode``, ``chip_size``, ``stride``, ``image`` (path,
width, height, band_count, dtype, nodata per band, crs_wkt, geotransform), ``labels`` (mask path
or label layer sources, mask dtype), ``classes`` (value, name, color, folder), ``background_value``
(null when unlabelled area is ignored), ``ignore_value``, ``split`` (val_fraction, test_fraction,
block_size, seed, blocks per split), ``keep_empty``, ``min_cover``, ``counts`` (chips per split and
per drop reason), ``classification_counts`` (chips per split and class folder), ``statistics``
(per split: chips, class pixel table, ignored pixels), ``index``; MODE objects adds ``objects``
(format, min_visible_fraction, classes with their YOLO index, counts per split and class name).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RsdlError
from ..labels.label_rules import LabelClass, MaskValues, unnamed_class_name
from .chips import ChipRules, ChipTally, ChipWindow, Split, SplitSettings

__all__ = [
    "BACKGROUND_COLOR",
    "BACKGROUND_NAME",
    "CLASSIFICATION_FOLDER",
    "COCO_FILE",
    "DATASET_FILE",
    "IMAGES_FOLDER",
    "INDEX_FILE",
    "INDEX_LAYER",
    "LAYOUT_VERSION",
    "MASKS_FOLDER",
    "VOC_FOLDER",
    "YOLO_DATA_FILE",
    "YOLO_LABELS_FOLDER",
    "ChipRecord",
    "ClassFolders",
    "class_entries",
    "classification_chip_path",
    "coco_annotations_path",
    "dataset_document",
    "image_chip_path",
    "load_dataset_document",
    "mask_chip_path",
    "pixel_field",
    "safe_folder_name",
    "voc_annotation_path",
    "yolo_label_path",
]

LAYOUT_VERSION = 1
DATASET_FILE = "dataset.json"
INDEX_FILE = "index.gpkg"
INDEX_LAYER = "chips"
IMAGES_FOLDER = "images"
MASKS_FOLDER = "masks"
CLASSIFICATION_FOLDER = "classification"
COCO_FILE = "annotations.json"
YOLO_LABELS_FOLDER = "labels"
YOLO_DATA_FILE = "data.yaml"
VOC_FOLDER = "annotations"
BACKGROUND_NAME = "background"
BACKGROUND_COLOR = "#000000"


def image_chip_path(split: Split, chip_id: str) -> str:
    """Relative path of a segmentation image chip."""
    return f"{split.value}/{IMAGES_FOLDER}/{chip_id}.tif"


def mask_chip_path(split: Split, chip_id: str) -> str:
    """Relative path of a segmentation mask chip."""
    return f"{split.value}/{MASKS_FOLDER}/{chip_id}.tif"


def classification_chip_path(split: Split, class_folder: str, chip_id: str) -> str:
    """Relative path of a classification chip."""
    return f"{CLASSIFICATION_FOLDER}/{split.value}/{class_folder}/{chip_id}.tif"


def coco_annotations_path(split: Split) -> str:
    """Relative path of a split's COCO annotations file."""
    return f"{split.value}/{COCO_FILE}"


def yolo_label_path(split: Split, chip_id: str) -> str:
    """Relative path of a chip's YOLO label file (beside images/, as Ultralytics looks for it)."""
    return f"{split.value}/{YOLO_LABELS_FOLDER}/{chip_id}.txt"


def voc_annotation_path(split: Split, chip_id: str) -> str:
    """Relative path of a chip's Pascal VOC annotation."""
    return f"{split.value}/{VOC_FOLDER}/{chip_id}.xml"


def pixel_field(value: int) -> str:
    """Index field holding a chip's pixel count of one class value."""
    return f"px_{value}"


def safe_folder_name(name: str) -> str:
    """A class name as a portable folder name."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_")
    return safe or "class"


class ClassFolders:
    """One distinct folder name per class value; names never change once given."""

    def __init__(self, names_by_value: dict[int, str]) -> None:
        self._folders: dict[int, str] = {}
        for value, name in sorted(names_by_value.items()):
            self.folder(value, name)

    def folder(self, value: int, name: str | None = None) -> str:
        """The folder of a class value (a new value gets one from its name, else ``class_<value>``)."""
        if value not in self._folders:
            base = safe_folder_name(name if name is not None else unnamed_class_name(value))
            taken = set(self._folders.values())
            self._folders[value] = base if base not in taken else f"{base}_{value}"
        return self._folders[value]

    def as_dict(self) -> dict[int, str]:
        return dict(self._folders)


@dataclass(frozen=True)
class ChipRecord:
    """One row of the chip index."""

    window: ChipWindow
    split: Split
    image_path: str | None
    mask_path: str | None
    class_path: str | None
    class_value: int | None
    class_name: str | None
    counts: dict[int, int] = field(default_factory=dict)
    ignored: int = 0
    objects: int | None = None  # objects in the chip (object chips only)

    @property
    def labelled_fraction(self) -> float:
        return sum(self.counts.values()) / self.window.size**2

    @property
    def ignored_fraction(self) -> float:
        return self.ignored / self.window.size**2


def class_entries(
    classes: list[LabelClass], values: MaskValues, folders: ClassFolders | None
) -> list[dict[str, Any]]:
    """The class table of dataset.json: background (when the mask has one) and every class."""
    rows = []
    by_value = {c.value: c for c in classes}
    if not values.unlabelled_is_ignore and values.background_value not in by_value:
        by_value[values.background_value] = LabelClass(
            values.background_value, BACKGROUND_NAME, BACKGROUND_COLOR
        )
    for value, label_class in sorted(by_value.items()):
        row: dict[str, Any] = {"value": value, "name": label_class.name, "color": label_class.color}
        if folders is not None:
            row["folder"] = folders.folder(value, label_class.name)
        rows.append(row)
    return rows


def dataset_document(
    *,
    rules: ChipRules,
    chip_size: int,
    stride: int,
    split: SplitSettings,
    block_counts: dict[str, int],
    image: dict[str, Any],
    labels: dict[str, Any],
    classes: list[LabelClass],
    values: MaskValues,
    folders: ClassFolders | None,
    tally: ChipTally,
    statistics: dict[str, Any],
    objects: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of dataset.json (``objects``: the "objects" entry of object chips)."""
    folder_of = folders.as_dict() if folders is not None else {}
    document = {
        "layout_version": LAYOUT_VERSION,
        "mode": rules.mode.name.lower(),
        "chip_size": chip_size,
        "stride": stride,
        "image": image,
        "labels": labels,
        "classes": class_entries(classes, values, folders),
        "background_value": None if values.unlabelled_is_ignore else values.background_value,
        "ignore_value": values.ignore_value,
        "split": {
            "val_fraction": split.val_fraction,
            "test_fraction": split.test_fraction,
            "block_size": split.block_size,
            "seed": split.seed,
            "blocks": block_counts,
        },
        "keep_empty": rules.keep_empty,
        "min_cover": rules.min_cover,
        "counts": tally.counts(),
        "classification_counts": {
            split_.value: {folder_of[value]: count for value, count in sorted(per_class.items())}
            for split_, per_class in tally.classified.items()
        },
        "statistics": statistics,
        "index": INDEX_FILE,
    }
    if objects is not None:
        document["objects"] = objects
    return document


def load_dataset_document(folder: str | os.PathLike) -> dict[str, Any]:
    """Read a chip dataset's dataset.json, refusing layouts this version does not know."""
    path = Path(folder) / DATASET_FILE
    if not path.is_file():
        raise RsdlError(f"'{folder}' is not a chip dataset: it has no {DATASET_FILE}.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RsdlError(f"'{path}' cannot be read ({error}); export the chips again.") from None
    if not isinstance(document, dict):
        raise RsdlError(
            f"'{path}' is not a chip dataset description (not a JSON object); export the chips again."
        )
    version = document.get("layout_version")
    if version != LAYOUT_VERSION:
        raise RsdlError(
            f"The chip dataset '{folder}' has layout version {version}; this version of rsdl "
            f"reads version {LAYOUT_VERSION}. Export the chips again."
        )
    return document
