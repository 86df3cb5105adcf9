"""Object chips: label objects cut to chips, and their COCO, YOLO and Pascal VOC records.

Pure numpy; the GDAL side (reading the label features, writing the files) is
``qgis_io/object_chips.py``; the chip plan, split and keep rules are ``core/datasets/chips.py``.

Objects
    Every label feature is one object (a multipolygon is one object with several parts). Objects
    live in the image's pixel coordinates: x is the column, y the row, the image's top-left corner
    is (0, 0) and pixel (row, col) covers [col, col + 1) x [row, row + 1). Lines and points have no
    area: they become objects only when buffered (BUFFER_WIDTH).

Cut to a chip
    Each ring of the object is clipped to the chip square (Sutherland-Hodgman). The visible
    fraction is the clipped area over the whole object's area (polygon areas, holes subtracted).
    The object is kept in the chip when the clipped area is positive and the fraction is at least
    MIN_VISIBLE_FRACTION; otherwise it is left out of that chip (it may be whole in a neighbour).
    Its box is the bounding box of the clipped polygon, in chip pixels (the chip's top-left
    corner is 0, 0). A chip with no kept object is "empty" for KEEP_EMPTY.

Records (coordinates rounded to 1/1000 pixel)
    COCO: ``bbox`` [x, y, width, height], ``area`` (the clipped polygon's area in pixels),
    ``iscrowd`` 0, ``segmentation``: one flat [x1, y1, x2, y2, ...] list per clipped part (holes
    joined to their outer ring by a zero-width cut, which even-odd rasterizers such as
    pycocotools' fill correctly). Category ids are the class values.
    YOLO: one line ``class cx cy w h`` per object, normalised by the chip size; class indices are
    0, 1, ... in class value order (listed in data.yaml).
    Pascal VOC: ``xmin ymin xmax ymax`` as 0-based pixel edges (as DeepForest and torchvision read
    them); ``truncated`` is 1 for objects cut by the chip edge.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree

import numpy as np

from ..errors import RsdlError
from ..labels.label_rules import LabelClass
from ..reports.class_table import LogLine
from .chips import ChipWindow, Split

__all__ = [
    "DEFAULT_MIN_VISIBLE_FRACTION",
    "OBJECT_FORMAT_DESCRIPTIONS",
    "ChipObject",
    "ChipObjects",
    "CocoSplit",
    "LabelObject",
    "ObjectClasses",
    "ObjectFormat",
    "ObjectIndex",
    "ObjectPart",
    "ObjectSettings",
    "ObjectTally",
    "clip_object",
    "clip_ring",
    "map_to_pixel",
    "object_report_lines",
    "pixel_to_map",
    "ring_area",
    "voc_annotation_xml",
    "yolo_data_yaml",
    "yolo_label_text",
]

DEFAULT_MIN_VISIBLE_FRACTION = 0.5
_DECIMALS = 3  # 1/1000 pixel: far below any label's accuracy, keeps files small
_AREA_EPSILON = 1e-9  # pixels²: clipped slivers below this are nothing


class ObjectFormat(enum.IntEnum):
    """The annotation format of object chips; the value is the OBJECT_FORMAT option."""

    COCO = 0
    YOLO = 1
    VOC = 2


OBJECT_FORMAT_DESCRIPTIONS = {
    ObjectFormat.COCO: "COCO JSON (boxes and instance polygons, one annotations.json per split)",
    ObjectFormat.YOLO: "YOLO txt (boxes, one .txt per chip, data.yaml)",
    ObjectFormat.VOC: "Pascal VOC xml (boxes, one .xml per chip)",
}


@dataclass(frozen=True)
class ObjectSettings:
    """How objects become chip annotations."""

    format: ObjectFormat = ObjectFormat.COCO
    min_visible_fraction: float = DEFAULT_MIN_VISIBLE_FRACTION

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_visible_fraction <= 1.0:
            raise RsdlError(f"MIN_VISIBLE_FRACTION must be between 0 and 1, got {self.min_visible_fraction}.")


def map_to_pixel(geotransform: Sequence[float], points: np.ndarray) -> np.ndarray:
    """(n, 2) map coordinates to pixel coordinates (x = column, y = row) of a north-up grid."""
    x0, dx, _, y0, _, dy = geotransform
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.column_stack([(points[:, 0] - x0) / dx, (points[:, 1] - y0) / dy])


def pixel_to_map(geotransform: Sequence[float], points: np.ndarray) -> np.ndarray:
    """(n, 2) pixel coordinates (x = column, y = row) to map coordinates of a north-up grid."""
    x0, dx, _, y0, _, dy = geotransform
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.column_stack([x0 + points[:, 0] * dx, y0 + points[:, 1] * dy])


def _signed_area(ring: np.ndarray) -> float:
    if len(ring) < 3:
        return 0.0
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def ring_area(ring: np.ndarray) -> float:
    """Area enclosed by a ring of (n, 2) points (shoelace; closed or not)."""
    return abs(_signed_area(_open_ring(ring)))


def _open_ring(ring: np.ndarray) -> np.ndarray:
    """The ring without a repeated closing point."""
    ring = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        return ring[:-1]
    return ring


def _clip_edge(points: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """One Sutherland-Hodgman pass: keep the side of the line ``coordinate[axis] = bound``."""
    if len(points) == 0:
        return points
    values = points[:, axis]
    inside = values >= bound if keep_above else values <= bound
    output: list[np.ndarray] = []
    previous, previous_inside = points[-1], bool(inside[-1])
    for point, point_inside in zip(points, inside):
        if point_inside != previous_inside:
            t = (bound - previous[axis]) / (point[axis] - previous[axis])
            crossing = previous + t * (point - previous)
            crossing[axis] = bound  # exactly on the edge, whatever the rounding
            output.append(crossing)
        if point_inside:
            output.append(point)
        previous, previous_inside = point, bool(point_inside)
    return np.asarray(output, dtype=np.float64).reshape(-1, 2)


def clip_ring(ring: np.ndarray, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
    """The part of a ring inside the rectangle, as one ring (Sutherland-Hodgman).

    A concave ring cut into several pieces comes back as one ring whose pieces are joined by
    zero-width runs along the rectangle's edge: its area and its bounding box are those of the
    pieces. Returns (0, 2) when nothing is inside."""
    points = _open_ring(ring)
    points = _clip_edge(points, 0, xmin, keep_above=True)
    points = _clip_edge(points, 0, xmax, keep_above=False)
    points = _clip_edge(points, 1, ymin, keep_above=True)
    points = _clip_edge(points, 1, ymax, keep_above=False)
    return points


@dataclass(frozen=True)
class ObjectPart:
    """One polygon of an object: its outer ring and holes, (n, 2) pixel coordinates each."""

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    @property
    def area(self) -> float:
        return max(0.0, ring_area(self.exterior) - sum(ring_area(hole) for hole in self.holes))


@dataclass(frozen=True)
class LabelObject:
    """One label feature as an object in the image's pixel coordinates."""

    class_value: int
    parts: tuple[ObjectPart, ...]
    area: float = field(init=False)
    bounds: tuple[float, float, float, float] = field(init=False)  # xmin, ymin, xmax, ymax

    def __post_init__(self) -> None:
        object.__setattr__(self, "area", sum(part.area for part in self.parts))
        points = [_open_ring(part.exterior) for part in self.parts if len(part.exterior)]
        if points:
            stacked = np.concatenate(points)
            bounds = (*stacked.min(axis=0), *stacked.max(axis=0))
            object.__setattr__(self, "bounds", tuple(float(v) for v in bounds))
        else:
            object.__setattr__(self, "bounds", (0.0, 0.0, 0.0, 0.0))


@dataclass(frozen=True)
class ChipObject:
    """An object as it appears in one chip, in chip pixels."""

    class_value: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    area: float  # of the clipped polygon
    visible_fraction: float
    polygons: tuple[np.ndarray, ...]  # one ring per clipped part, holes joined in

    @property
    def truncated(self) -> bool:
        """Cut by the chip edge (part of the object lies outside the chip)."""
        return self.visible_fraction < 1.0 - 1e-9


def _oriented(ring: np.ndarray, counter_clockwise: bool) -> np.ndarray:
    return ring if (_signed_area(ring) >= 0) == counter_clockwise else ring[::-1]


def _join_holes(exterior: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """One ring: the exterior with each hole spliced in through a zero-width cut.

    The hole runs the other way round from the exterior, so the shoelace area is the part's area
    and even-odd filling leaves the hole empty (the cut's two edges cancel)."""
    ring = _oriented(exterior, counter_clockwise=True)
    for hole in holes:
        hole = _oriented(hole, counter_clockwise=False)
        distances = ((ring[:, np.newaxis, :] - hole[np.newaxis, :, :]) ** 2).sum(axis=-1)
        at_ring, at_hole = np.unravel_index(int(np.argmin(distances)), distances.shape)
        hole_loop = np.concatenate([hole[at_hole:], hole[: at_hole + 1]])
        ring = np.concatenate([ring[: at_ring + 1], hole_loop, ring[at_ring:]])
    return ring


def clip_object(obj: LabelObject, window: ChipWindow, min_visible_fraction: float) -> ChipObject | None:
    """The object as it appears in the chip, or None when it is not visible enough there."""
    if obj.area <= _AREA_EPSILON:
        return None
    xmin, ymin = float(window.col), float(window.row)
    xmax, ymax = xmin + window.size, ymin + window.size
    if obj.bounds[0] >= xmax or obj.bounds[2] <= xmin or obj.bounds[1] >= ymax or obj.bounds[3] <= ymin:
        return None
    area = 0.0
    polygons: list[np.ndarray] = []
    for part in obj.parts:
        exterior = clip_ring(part.exterior, xmin, ymin, xmax, ymax)
        exterior_area = ring_area(exterior)
        if exterior_area <= _AREA_EPSILON:
            continue
        holes = [clip_ring(hole, xmin, ymin, xmax, ymax) for hole in part.holes]
        holes = [hole for hole in holes if ring_area(hole) > _AREA_EPSILON]
        part_area = exterior_area - sum(ring_area(hole) for hole in holes)
        if part_area <= _AREA_EPSILON:
            continue
        area += part_area
        polygons.append(_join_holes(exterior, holes) - (xmin, ymin))
    if not polygons:
        return None
    fraction = min(1.0, area / obj.area)
    if fraction < min_visible_fraction:
        return None
    points = np.concatenate(polygons)
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    return ChipObject(
        obj.class_value, (float(x1), float(y1), float(x2), float(y2)), area, fraction, tuple(polygons)
    )


@dataclass(frozen=True)
class ChipObjects:
    """The objects kept in one chip, and how many others reached into it too little."""

    objects: list[ChipObject]
    dropped: int = 0


class ObjectIndex:
    """Label objects, found by chip through their bounding boxes."""

    def __init__(self, objects: Iterable[LabelObject], min_visible_fraction: float) -> None:
        self.objects = [obj for obj in objects if obj.area > _AREA_EPSILON]
        self.min_visible_fraction = min_visible_fraction
        self._bounds = np.asarray([obj.bounds for obj in self.objects], dtype=np.float64).reshape(-1, 4)
        self._strip: tuple[int, int] | None = None
        self._strip_ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.objects)

    def _in_rows(self, row: int, size: int) -> np.ndarray:
        # Chips come strip by strip: the objects of a strip are found once per strip.
        if self._strip != (row, size):
            bounds = self._bounds
            self._strip_ids = np.flatnonzero((bounds[:, 1] < row + size) & (bounds[:, 3] > row))
            self._strip = (row, size)
        return self._strip_ids

    def in_chip(self, window: ChipWindow) -> ChipObjects:
        """The objects visible enough in the chip, in label order."""
        ids = self._in_rows(window.row, window.size)
        bounds = self._bounds[ids]
        ids = ids[(bounds[:, 0] < window.col + window.size) & (bounds[:, 2] > window.col)]
        kept: list[ChipObject] = []
        dropped = 0
        for index in ids:
            clipped = clip_object(self.objects[index], window, 0.0)
            if clipped is None:
                continue  # only touches the chip
            if clipped.visible_fraction >= self.min_visible_fraction:
                kept.append(clipped)
            else:
                dropped += 1
        return ChipObjects(kept, dropped)


class ObjectClasses:
    """The object classes: COCO category ids are the class values, YOLO indices 0, 1, ... in value order."""

    def __init__(self, classes: Iterable[LabelClass]) -> None:
        self.classes = sorted(classes, key=lambda c: c.value)
        self._index = {c.value: index for index, c in enumerate(self.classes)}
        self._names = {c.value: c.name for c in self.classes}

    def name(self, value: int) -> str:
        return self._names.get(value, str(value))

    def yolo_index(self, value: int) -> int:
        return self._index[value]

    def coco_categories(self) -> list[dict[str, object]]:
        return [{"id": c.value, "name": c.name, "supercategory": "object"} for c in self.classes]

    def entries(self) -> list[dict[str, object]]:
        """The class table of dataset.json's "objects" entry."""
        return [
            {"value": c.value, "name": c.name, "color": c.color, "yolo_index": self._index[c.value]}
            for c in self.classes
        ]


def _round(value: float) -> float:
    return round(float(value), _DECIMALS) + 0.0  # + 0.0: no "-0.0" in files


class CocoSplit:
    """The COCO detection document of one split, built chip by chip."""

    def __init__(self) -> None:
        self.images: list[dict[str, object]] = []
        self.annotations: list[dict[str, object]] = []

    def add_chip(self, file_name: str, window: ChipWindow, objects: Sequence[ChipObject]) -> None:
        image_id = len(self.images) + 1
        self.images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": window.size,
                "height": window.size,
                "chip_id": window.chip_id,
            }
        )
        for obj in objects:
            x1, y1, x2, y2 = (_round(v) for v in obj.box)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj.class_value,
                    "bbox": [x1, y1, _round(x2 - x1), _round(y2 - y1)],
                    "area": _round(obj.area),
                    "iscrowd": 0,
                    "segmentation": [[_round(v) for v in ring.ravel()] for ring in obj.polygons],
                }
            )

    def document(self, classes: ObjectClasses) -> dict[str, object]:
        return {
            "info": {"description": "Object chips exported by rsdl:exportchips", "version": "1.0"},
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": classes.coco_categories(),
        }


def yolo_label_text(objects: Sequence[ChipObject], chip_size: int, classes: ObjectClasses) -> str:
    """A YOLO label file: ``class cx cy w h`` per object, normalised by the chip size."""
    lines = []
    for obj in objects:
        x1, y1, x2, y2 = obj.box
        values = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        numbers = " ".join(f"{min(max(v / chip_size, 0.0), 1.0):.6f}" for v in values)
        lines.append(f"{classes.yolo_index(obj.class_value)} {numbers}\n")
    return "".join(lines)


def yolo_data_yaml(classes: ObjectClasses, splits: Iterable[Split]) -> str:
    """Ultralytics' data.yaml: image folders per split (relative to the yaml's folder) and class names.

    No ``path`` key: Ultralytics then resolves the folders from the yaml's own folder."""
    lines = [f"{split.value}: {split.value}/images\n" for split in splits]
    lines.append(f"nc: {len(classes.classes)}\n")
    lines.append("names:\n")
    # JSON strings are valid YAML double-quoted strings.
    lines += [f"  {index}: {json.dumps(c.name)}\n" for index, c in enumerate(classes.classes)]
    return "".join(lines)


def _number_text(value: float) -> str:
    text = f"{_round(value):.{_DECIMALS}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def voc_annotation_xml(
    file_name: str,
    folder: str,
    chip_size: int,
    depth: int,
    objects: Sequence[ChipObject],
    classes: ObjectClasses,
) -> str:
    """A Pascal VOC annotation of one chip."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = folder
    ElementTree.SubElement(root, "filename").text = file_name
    size = ElementTree.SubElement(root, "size")
    for name, value in (("width", chip_size), ("height", chip_size), ("depth", depth)):
        ElementTree.SubElement(size, name).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "0"
    for obj in objects:
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = classes.name(obj.class_value)
        ElementTree.SubElement(element, "pose").text = "Unspecified"
        ElementTree.SubElement(element, "truncated").text = "1" if obj.truncated else "0"
        ElementTree.SubElement(element, "difficult").text = "0"
        box = ElementTree.SubElement(element, "bndbox")
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            ElementTree.SubElement(box, name).text = _number_text(value)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


@dataclass
class ObjectTally:
    """Objects written per split and class value, and how often an object reached into a written
    chip too little to be annotated there (an object counts once per chip)."""

    written: dict[Split, dict[int, int]] = field(default_factory=dict)
    dropped: int = 0

    def add(self, split: Split, chip: ChipObjects) -> None:
        per_class = self.written.setdefault(split, {})
        for obj in chip.objects:
            per_class[obj.class_value] = per_class.get(obj.class_value, 0) + 1
        self.dropped += chip.dropped

    @property
    def total(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.written.values())

    def counts(self, classes: ObjectClasses) -> dict[str, object]:
        """Objects per split (by class name, and total), for reports and dataset.json."""
        result: dict[str, object] = {}
        for split in Split:
            per_class = self.written.get(split, {})
            result[split.value] = {classes.name(v): n for v, n in sorted(per_class.items())}
        result["total"] = self.total
        result["dropped_mostly_outside"] = self.dropped
        return result


def object_report_lines(tally: ObjectTally, classes: ObjectClasses, without_area: int) -> list[LogLine]:
    """Objects written per split and class, and what was left out, as log lines."""
    lines = []
    for split in Split:
        per_class = tally.written.get(split)
        if per_class:
            names = ", ".join(f"{classes.name(value)} {count}" for value, count in sorted(per_class.items()))
            lines.append(LogLine(f"Objects in '{split.value}': {sum(per_class.values())} ({names})"))
    if tally.dropped:
        lines.append(
            LogLine(
                f"{tally.dropped} times an object reached into a chip with less than "
                "MIN_VISIBLE_FRACTION of its area and was left out of that chip."
            )
        )
    if without_area:
        lines.append(
            LogLine(
                f"{without_area} line or point labels have no area and are not objects; give them "
                "a width (BUFFER_WIDTH) to make them objects.",
                warning=True,
            )
        )
    return lines
