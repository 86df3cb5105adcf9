"""Object data: detection and instance-segmentation samples, their batches, and chip folders.

A sample (dict) is:

- ``image``: float32 (C, H, W), normalised by the data's spec (``ModelSpec.normalize``);
- ``boxes``: float32 (N, 4) x1, y1, x2, y2 in chip pixels (pixel-edge coordinates: the chip
  spans [0, W] x [0, H]);
- ``class_ids``: int64 (N,), 0-based object classes (the class table's order, no background);
- ``masks``: uint8 (N, H, W), instance data only;
- ``chip_id``: str.

``collate_objects`` stacks the images and keeps each chip's objects apart (N differs per chip).

Objects reach a dataset as records, one per object: ``{"value": class value, "box": [x1, y1,
x2, y2], "polygons": [[x, y, x, y, ...], ...] or None}`` in chip pixels; polygons are
core/datasets/object_chips.py's clipped rings (holes joined to their ring by a zero-width cut)
and are burnt into masks when a sample is read, by GDAL's rasterizer (even-odd, so the cut
leaves holes empty) with pixel centres inside, as rsdl:rasterizelabels burns.

``ObjectChipsDataModule`` reads rsdl:exportchips MODE objects folders (COCO or YOLO) as the
export split them; ``raster_objects.py`` cuts chips from rasters and vector objects directly.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.features import rasterize
from rasterio.transform import Affine
from torch.utils.data import Dataset

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.datasets.chip_folder import (
    COCO_FILE,
    IMAGES_FOLDER,
    YOLO_DATA_FILE,
    YOLO_LABELS_FOLDER,
    load_dataset_document,
)
from rsdl_qgis_plugin.core.errors import RsdlError

from .base import SPLITS, RsdlDataModule, nodata_validity, resolution_cm
from .cache import cache_key, file_fingerprint
from .classes import ClassTable
from .datasets import read_raster_file
from .objects_augment import ObjectAugment
from .transforms import Augment

OBJECT_TASKS = ("detection", "instance")
FORMATS = ("auto", "coco", "yolo")


@dataclass(frozen=True)
class ObjectChip:
    """One chip: what its reader takes (a file path, or raster number, row, col), its id and objects."""

    source: Any
    chip_id: str
    objects: tuple[dict[str, Any], ...]


def object_masks(polygons: Sequence[Sequence[Sequence[float]]], height: int, width: int) -> np.ndarray:
    """(N, H, W) uint8 masks of objects given as flat [x, y, x, y, ...] rings in chip pixels.

    Each object is burnt only over its own bounding pixels (cheap for small objects in big chips).
    """
    masks = np.zeros((len(polygons), height, width), dtype=np.uint8)
    for index, rings in enumerate(polygons):
        points_of = [np.asarray(ring, dtype=np.float64).reshape(-1, 2) for ring in rings if len(ring) >= 6]
        if not points_of:
            continue
        # GeoJSON rings are closed (COCO's and core's are not): GDAL skips open ones.
        shapes = [{"type": "Polygon", "coordinates": [[*p.tolist(), p[0].tolist()]]} for p in points_of]
        points = np.concatenate(points_of)
        col0, row0 = np.clip(np.floor(points.min(axis=0)).astype(int), 0, (width, height))
        col1, row1 = np.clip(np.ceil(points.max(axis=0)).astype(int), 0, (width, height))
        if col1 <= col0 or row1 <= row0:
            continue
        masks[index, row0:row1, col0:col1] = rasterize(
            [(shape, 1) for shape in shapes],
            out_shape=(int(row1 - row0), int(col1 - col0)),
            transform=Affine.translation(float(col0), float(row0)),
            fill=0,
            dtype="uint8",
        )
    return masks


def object_targets(
    records: Sequence[dict[str, Any]], classes: ClassTable, size: tuple[int, int] | None
) -> dict[str, torch.Tensor]:
    """boxes, class_ids (and masks when ``size`` = (H, W) is given) of a chip's object records.

    Boxes without width or height (slivers) are left out: detectors refuse them."""
    boxes = np.asarray([r["box"] for r in records], dtype=np.float32).reshape(-1, 4)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    kept = [record for record, flag in zip(records, keep) if flag]
    targets = {
        "boxes": torch.from_numpy(boxes[keep]),
        "class_ids": torch.tensor([classes.index_of_value(int(r["value"])) for r in kept], dtype=torch.int64),
    }
    if size is not None:
        targets["masks"] = torch.from_numpy(object_masks([r["polygons"] or [] for r in kept], *size))
    return targets


class ObjectDataset(Dataset):
    """Object samples read one chip at a time (see the module docstring for the sample)."""

    def __init__(
        self,
        chips: Sequence[ObjectChip],
        reader: Callable[[Any], np.ndarray],
        spec: ModelSpec,
        classes: ClassTable,
        masks: bool,
        augment: Augment | None = None,
    ):
        self.chips, self.reader, self.spec, self.classes = list(chips), reader, spec, classes
        self.masks, self.augment = masks, augment

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        chip = self.chips[index]
        image = self.reader(chip.source)
        size = tuple(image.shape[-2:]) if self.masks else None
        sample: dict[str, Any] = {
            "image": torch.from_numpy(self.spec.normalize(image)),
            **object_targets(chip.objects, self.classes, size),
        }
        if self.augment is not None:
            sample = self.augment(sample)
        sample["chip_id"] = chip.chip_id
        return sample


TARGET_KEYS = ("boxes", "class_ids", "masks")


def collate_objects(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch: ``image`` (B, C, H, W) stacked, ``targets`` one dict per chip (boxes, class_ids and
    masks when present), ``chip_id`` a list."""
    return {
        "image": torch.stack([item["image"] for item in items]),
        "targets": [{key: item[key] for key in TARGET_KEYS if key in item} for item in items],
        "chip_id": [item.get("chip_id", "") for item in items],
    }


class ObjectDataModule(RsdlDataModule):
    """What the object data modules share: tasks, datasets, batches, the model type, counts.

    Subclasses provide ``class_table`` (object classes only), ``in_channels``, ``_build_spec``,
    ``_items(split)`` (ObjectChip list) and ``_reader()`` (source -> (C, H, W) pixels).
    """

    tasks = OBJECT_TASKS
    augment_class = ObjectAugment  # moves boxes and masks with the image

    @property
    def object_task(self) -> str:
        """ "detection" (boxes) or "instance" (boxes and masks)."""
        return self.task

    @property
    def with_masks(self) -> bool:
        return self.task == "instance"

    def _model_type(self) -> ModelType:
        return ModelType.INSTANCE_SEGMENTOR if self.with_masks else ModelType.DETECTOR

    def _make_dataset(self, items: Sequence[Any], reader: Callable[[Any], Any], augment: Any) -> Dataset:
        return ObjectDataset(items, reader, self._spec, self.class_table, self.with_masks, augment)

    def _collate_fn(self) -> Callable[[list[Any]], Any]:
        return collate_objects

    @abc.abstractmethod
    def _items(self, split: str) -> list[ObjectChip]: ...

    def object_counts(self) -> dict[str, dict[int, int]]:
        """Objects per split and class value in the chips (an object cut into two chips counts twice)."""
        if self._spec is None:
            self._spec = self._build_spec()
        counts: dict[str, dict[int, int]] = {}
        for split in SPLITS:
            per_class = counts.setdefault(split, {})
            for chip in self._items(split):
                for record in chip.objects:
                    per_class[int(record["value"])] = per_class.get(int(record["value"]), 0) + 1
        return counts

    def train_counts(self) -> dict[int, int]:
        """Training objects per class value."""
        return self.object_counts()["train"]

    def _check_records(self, chips: Sequence[ObjectChip], where: str) -> None:
        """Every object's class is known, and instance data has polygons."""
        values = set(self.class_table.values)
        for chip in chips:
            for record in chip.objects:
                if int(record["value"]) not in values:
                    raise RsdlError(
                        f"An object of class value {record['value']} in {where} (chip {chip.chip_id}) is "
                        f"not among the classes {sorted(values)}."
                    )
                if self.with_masks and not record.get("polygons"):
                    raise RsdlError(
                        f"task 'instance' needs object polygons, but {where} has an object without one "
                        f"(chip {chip.chip_id}); use task 'detection' for boxes only."
                    )


# -- chip folders ---------------------------------------------------------------------------------


def detect_format(root: Path, document: dict[str, Any]) -> str:
    """ "coco" or "yolo": as dataset.json says, else from the files present."""
    declared = str(document.get("objects", {}).get("format", "")).lower()
    if declared in ("coco", "yolo"):
        return declared
    if declared:
        raise RsdlError(
            f"The chip folder '{root}' holds {declared.upper()} annotations; training reads COCO and YOLO "
            "object chips. Export them again with OBJECT_FORMAT COCO or YOLO."
        )
    if any((root / split / COCO_FILE).is_file() for split in SPLITS):
        return "coco"
    if (root / YOLO_DATA_FILE).is_file() or any((root / s / YOLO_LABELS_FOLDER).is_dir() for s in SPLITS):
        return "yolo"
    raise RsdlError(f"The chip folder '{root}' holds neither COCO nor YOLO object annotations.")


def read_coco_split(folder: Path) -> list[ObjectChip]:
    """The chips of one split's annotations.json (COCO bbox [x, y, w, h] -> x1, y1, x2, y2)."""
    path = folder / COCO_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RsdlError(f"'{path}' cannot be read as COCO annotations: {error}") from None
    per_image: dict[Any, list[dict[str, Any]]] = {}
    for annotation in document.get("annotations", []):
        x, y, w, h = (float(v) for v in annotation["bbox"])
        segmentation = annotation.get("segmentation")
        if isinstance(segmentation, dict):
            raise RsdlError(
                f"'{path}' holds RLE masks; training reads polygon segmentations (as rsdl:exportchips "
                "writes them)."
            )
        record = {
            "value": int(annotation["category_id"]),
            "box": [x, y, x + w, y + h],
            "polygons": segmentation or None,
        }
        per_image.setdefault(annotation["image_id"], []).append(record)
    images = sorted(document.get("images", []), key=lambda image: str(image["file_name"]))
    return [
        ObjectChip(
            str(folder / image["file_name"]),
            str(image.get("chip_id") or Path(image["file_name"]).stem),
            tuple(per_image.get(image["id"], ())),
        )
        for image in images
    ]


def read_yolo_split(folder: Path, chip_size: int, values_by_index: dict[int, int]) -> list[ObjectChip]:
    """The chips of one split's images/ and labels/ (``class cx cy w h`` normalised by the chip size;
    a chip without a label file has no object, as Ultralytics reads it)."""
    chips = []
    for image in sorted((folder / IMAGES_FOLDER).glob("*.tif")):
        label = folder / YOLO_LABELS_FOLDER / f"{image.stem}.txt"
        records = []
        lines = label.read_text(encoding="utf-8").splitlines() if label.is_file() else []
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5 or int(fields[0]) not in values_by_index:
                raise RsdlError(
                    f"'{label}' line {number} is not 'class cx cy w h' of a known class: {line!r}"
                )
            cx, cy, w, h = (float(v) * chip_size for v in fields[1:])
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            records.append({"value": values_by_index[int(fields[0])], "box": box, "polygons": None})
        chips.append(ObjectChip(str(image), image.stem, tuple(records)))
    return chips


class ObjectChipsDataModule(ObjectDataModule):
    """Object chips exported by rsdl:exportchips (MODE objects), COCO or YOLO, split as exported.

    Args:
        root: the chip folder (holds dataset.json).
        task: "detection" (boxes) or "instance" (boxes and masks from COCO polygons).
        format: "auto" (dataset.json's, else the annotation files present), "coco" or "yolo".
        bands: 1-based bands of the chips to use, in order (default: all).
        Other arguments as ChipsDataModule (augment: flips, 90° rotations and jitter that move
        the boxes and masks with the image; off for validation and test).
    """

    def __init__(
        self,
        root: str,
        task: str = "detection",
        format: str = "auto",
        bands: list[int] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: bool = True,
        jitter: float = 0.1,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        max_pixel_value: float | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            task, batch_size, num_workers, augment, jitter, mean, std, max_pixel_value, cache_dir
        )
        self.save_plain_hyperparameters()
        self.root = Path(root)
        self.document = load_dataset_document(self.root)
        if self.document.get("mode") != "objects":
            raise RsdlError(
                f"The chip folder '{root}' was exported in mode '{self.document.get('mode')}'; object "
                "training needs chips exported in mode 'objects'."
            )
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
        self.format = detect_format(self.root, self.document) if format == "auto" else format
        if self.format == "yolo" and self.with_masks:
            raise RsdlError("YOLO chips hold boxes only; task 'instance' needs COCO chips (polygons).")
        entries = self.document.get("objects", {}).get("classes")
        if not entries:
            raise RsdlError(f"'{root}/dataset.json' lists no object classes (its 'objects' entry).")
        self.class_entries = sorted(entries, key=lambda row: int(row["value"]))
        image = self.document["image"]
        self.chip_size = int(self.document["chip_size"])
        self.bands = list(bands) if bands else list(range(1, int(image["band_count"]) + 1))
        if max(self.bands) > int(image["band_count"]) or min(self.bands) < 1:
            raise RsdlError(f"bands {self.bands} do not exist in chips of {image['band_count']} bands.")
        self._chips: dict[str, list[ObjectChip]] = {}

    @property
    def class_table(self) -> ClassTable:
        return ClassTable.from_entries(self.class_entries)

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def _items(self, split: str) -> list[ObjectChip]:
        if split not in self._chips:
            folder = self.root / split
            if self.format == "coco":
                chips = read_coco_split(folder) if (folder / COCO_FILE).is_file() else []
            else:
                values = {
                    int(row.get("yolo_index", index)): int(row["value"])
                    for index, row in enumerate(self.class_entries)
                }
                chips = read_yolo_split(folder, self.chip_size, values)
            self._check_records(chips, str(folder))
            self._chips[split] = chips
        return self._chips[split]

    def _reader(self) -> Callable[[Any], np.ndarray]:
        return partial(read_raster_file, bands=self.bands)

    def _statistics(self, max_value: float) -> tuple[list[float], list[float]]:
        key = cache_key(
            "object-chips-bands", file_fingerprint(self.root / "dataset.json"), self.bands, max_value
        )
        image = self.document["image"]
        valid = nodata_validity([image["nodata"][b - 1] for b in self.bands])
        sources = [chip.source for chip in self._sample(self._items("train"))]
        images = ((pixels, valid(pixels)) for pixels in (read_raster_file(s, self.bands) for s in sources))
        return self._cached_statistics(
            self.cache_dir / f"chips-{key}" / "bands.json", len(self.bands), max_value, images
        )

    def _build_spec(self) -> ModelSpec:
        image = self.document["image"]
        objects = self.document.get("objects", {})
        return self._make_spec(
            bands=self.bands,
            dtype=image["dtype"],
            tile_size=self.chip_size,
            statistics=self._statistics,
            resolution=resolution_cm(image.get("crs_wkt", ""), float(image["geotransform"][1])),
            ignore_index=None,
            training={
                "data": {
                    "source": "rsdl object chips",
                    "root": str(self.root.resolve()),
                    "format": self.format,
                    "image": image.get("path"),
                    "labels": self.document.get("labels"),
                    "min_visible_fraction": objects.get("min_visible_fraction"),
                },
                "split": {
                    **self.document.get("split", {}),
                    "chips": self.document.get("counts", {}),
                    "objects": objects.get("counts", {}),
                },
            },
        )
