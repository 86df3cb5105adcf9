"""Vector labels to burnable shapes with the plugin's label rules (``core.label_rules``).

The same choices as rsdl:rasterizelabels: the class from a constant burn value, from a field
(whole numbers are pixel values; text names get 1, 2, ... in sorted order, skipping the
background and ignore values), or else one class per layer (1, 2, ... in the order given);
background or ignore for unlabelled pixels; an overlap rule. Geometries are reprojected to the
raster's CRS (rasterio/GDAL), invalid polygons repaired (shapely make_valid, polygon parts
kept), and lines/points optionally buffered.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from rsdl_qgis_plugin.core.datasets.chip_folder import class_entries
from rsdl_qgis_plugin.core.errors import LabelValueError, RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import (
    LabelClass,
    MaskValues,
    OverlapRule,
    assign_text_class_values,
    check_classes_against_mask_values,
    class_value_from_number,
    make_label_classes,
    text_class_name,
)

from .vectors import VectorLayer

OVERLAP_NAMES = {
    "last": OverlapRule.LAST_FEATURE,
    "highest": OverlapRule.HIGHEST_VALUE,
    "lowest": OverlapRule.LOWEST_VALUE,
}
UNLABELLED_NAMES = ("background", "ignore")
BUFFER_QUAD_SEGMENTS = 8


@dataclass(frozen=True)
class LabelOptions:
    """How vector labels become a mask (the parameters of rsdl:rasterizelabels).

    ``unlabelled``: "background" for complete labels, "ignore" for sparse samples.
    ``overlap``: "last" (drawing order), "highest" or "lowest" class value wins.
    ``buffer_width``: full width burnt along lines / around points, in the raster CRS's units.
    ``buffer_field``: a numeric field giving each line or point its own width (same units);
    NULL falls back to ``buffer_width`` (rsdl:rasterizelabels' BUFFER_FIELD).
    """

    field: str | None = None
    name_field: str | None = None
    burn_value: int | None = None
    background_value: int = 0
    ignore_value: int = 255
    unlabelled: str = "background"
    overlap: str = "last"
    all_touched: bool = False
    buffer_width: float = 0.0
    buffer_field: str | None = None

    def __post_init__(self) -> None:
        if self.unlabelled not in UNLABELLED_NAMES:
            raise ValueError(f"unlabelled must be one of {UNLABELLED_NAMES}, got {self.unlabelled!r}.")
        if self.overlap not in OVERLAP_NAMES:
            raise ValueError(f"overlap must be one of {sorted(OVERLAP_NAMES)}, got {self.overlap!r}.")
        self.mask_values  # noqa: B018 - validates the reserved values now, not mid-run

    @property
    def mask_values(self) -> MaskValues:
        return MaskValues(self.background_value, self.ignore_value, self.unlabelled == "ignore")

    @property
    def overlap_rule(self) -> OverlapRule:
        return OVERLAP_NAMES[self.overlap]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LabelReport:
    """What turning features into shapes found."""

    features: int = 0
    burnt: int = 0
    repaired: int = 0
    skipped_null: int = 0
    skipped_empty: int = 0


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def feature_values(
    layers: Sequence[VectorLayer], options: LabelOptions
) -> tuple[list[list[int | None]], dict[int, str]]:
    """Each feature's class value (None: skipped, NULL class) per layer, and class names by value."""
    text_values: dict[str, int] | None = None
    if options.burn_value is None and options.field:
        for layer in layers:
            if layer.attributes and options.field not in layer.attributes[0]:
                raise RsdlError(
                    f"Label layer '{layer.name}' has no field '{options.field}'; its fields are: "
                    f"{', '.join(layer.attributes[0])}."
                )
        raw = [a.get(options.field) for layer in layers for a in layer.attributes]
        present = [value for value in raw if text_class_name(value) is not None]
        if not all(_is_number(value) for value in present):
            reserved = {options.background_value, options.ignore_value}
            text_values = assign_text_class_values((text_class_name(v) for v in present), reserved)

    names: dict[int, str] = {}
    per_layer: list[list[int | None]] = []
    for number, layer in enumerate(layers, start=1):
        values: list[int | None] = []
        for attributes in layer.attributes:
            if options.burn_value is not None:
                value, name = options.burn_value, layer.name
            elif options.field:
                raw_value = attributes.get(options.field)
                text = text_class_name(raw_value)
                if text is None:  # NULL or blank: no class, as in rsdl:rasterizelabels
                    values.append(None)
                    continue
                if text_values is not None:
                    value, name = text_values[text], text
                else:
                    value = class_value_from_number(raw_value, options.field, layer.name)
                    name = str(value)
            else:
                value, name = number, layer.name
            if options.name_field and attributes.get(options.name_field) is not None:
                name = str(attributes[options.name_field])
            names.setdefault(value, name)
            values.append(value)
        per_layer.append(values)
    if not names:
        raise LabelValueError(
            f"The label layers hold no class values (field '{options.field}' is NULL everywhere)."
        )
    return per_layer, names


def label_classes(layers: Sequence[VectorLayer], options: LabelOptions) -> list[LabelClass]:
    """The classes the labels hold (no background), checked against the reserved values."""
    _, names = feature_values(layers, options)
    classes = make_label_classes(names)
    check_classes_against_mask_values(classes, options.mask_values)
    return classes


def class_table_entries(layers: Sequence[VectorLayer], options: LabelOptions) -> list[dict[str, Any]]:
    """Rows (value, name, color) of every mask class, background included when the mask has one."""
    return class_entries(label_classes(layers, options), options.mask_values, None)


def _reproject(geometries: list[BaseGeometry], source: CRS, target: CRS) -> list[BaseGeometry]:
    if source == target or not geometries:
        return geometries
    try:
        moved = transform_geom(source, target, [mapping(g) for g in geometries])
    except Exception as error:  # GDAL/PROJ errors come in several types
        raise RsdlError(f"Labels cannot be reprojected from {source} to {target}: {error}") from error
    return [shape(g) for g in moved]


def _repair(geometry: BaseGeometry) -> BaseGeometry:
    """make_valid, keeping the polygon parts only (no slivers of lines or points)."""
    repaired = shapely.make_valid(geometry)
    parts = [p for p in shapely.get_parts(repaired) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _buffer_width(attributes: dict[str, Any], options: LabelOptions) -> float:
    """The full width to burn a line or point with: its own ``buffer_field`` value, if any."""
    own = attributes.get(options.buffer_field) if options.buffer_field else None
    return float(own) if _is_number(own) else options.buffer_width


def _check_buffer_field(layer: VectorLayer, options: LabelOptions) -> None:
    """A layer of lines or points must have the width field (polygons are never buffered)."""
    if not options.buffer_field or not layer.attributes or options.buffer_field in layer.attributes[0]:
        return
    if any(g is not None and g.geom_type not in ("Polygon", "MultiPolygon") for g in layer.geometries):
        raise RsdlError(f"Label layer '{layer.name}' has no field '{options.buffer_field}' (buffer_field).")


def burn_shapes(
    layers: Sequence[VectorLayer], options: LabelOptions, crs: CRS, report: LabelReport | None = None
) -> list[tuple[BaseGeometry, int]]:
    """(geometry in ``crs``, class value) pairs in burn order (later pairs win where they overlap)."""
    report = report if report is not None else LabelReport()
    per_layer, _ = feature_values(layers, options)
    shapes: list[tuple[BaseGeometry, int]] = []
    for layer, values in zip(layers, per_layer):
        _check_buffer_field(layer, options)
        widths = [_buffer_width(a, options) for a in layer.attributes]
        kept = [
            (g, v, w) for g, v, w in zip(layer.geometries, values, widths) if v is not None and g is not None
        ]
        report.features += len(layer)
        report.skipped_null += sum(v is None for v in values)
        report.skipped_empty += sum(g is None for g, v in zip(layer.geometries, values) if v is not None)
        moved = _reproject([g for g, _, _ in kept], layer.crs, crs)
        for geometry, (_, value, width) in zip(moved, kept):
            if geometry.geom_type in ("Polygon", "MultiPolygon") and not geometry.is_valid:
                geometry = _repair(geometry)
                report.repaired += 1
            elif width > 0 and geometry.geom_type not in ("Polygon", "MultiPolygon"):
                geometry = geometry.buffer(width / 2.0, quad_segs=BUFFER_QUAD_SEGMENTS)
            if not geometry.is_empty:
                shapes.append((geometry, value))
    # Stable sorts keep drawing order among equal values, as the plugin does.
    if options.overlap_rule == OverlapRule.HIGHEST_VALUE:
        shapes.sort(key=lambda item: item[1])
    elif options.overlap_rule == OverlapRule.LOWEST_VALUE:
        shapes.sort(key=lambda item: -item[1])
    report.burnt = len(shapes)
    return shapes
