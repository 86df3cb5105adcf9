"""Label rules shared by rasterization, chip export and training.

A label mask holds one unsigned integer per pixel:
- a class value for pixels under a label geometry;
- ``background_value`` for pixels under no label (or ``ignore_value`` when unlabelled area is
  unknown rather than background, as with sparse polygon samples);
- ``ignore_value`` where the reference raster is nodata. It is the mask's nodata value, and
  training passes it to the loss as ``ignore_index``.

Where labels overlap, the ``OverlapRule`` decides which class a pixel takes.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import LabelValueError

__all__ = [
    "OVERLAP_RULE_DESCRIPTIONS",
    "UINT_DTYPES",
    "LabelClass",
    "MaskValues",
    "OverlapRule",
    "assign_text_class_values",
    "check_classes_against_mask_values",
    "class_value_from_number",
    "default_class_color",
    "hex_to_rgb",
    "make_label_classes",
    "smallest_unsigned_dtype",
    "text_class_name",
    "unnamed_class_name",
]

UINT_DTYPES = (np.uint8, np.uint16, np.uint32)


class OverlapRule(enum.IntEnum):
    """Which class a pixel takes where label geometries overlap."""

    LAST_FEATURE = 0  # drawing order, as gdal_rasterize: the later feature (and layer) wins
    HIGHEST_VALUE = 1
    LOWEST_VALUE = 2

    @property
    def description(self) -> str:
        return OVERLAP_RULE_DESCRIPTIONS[self]


OVERLAP_RULE_DESCRIPTIONS = {
    OverlapRule.LAST_FEATURE: "Last feature wins (layer order, then feature order, as gdal_rasterize)",
    OverlapRule.HIGHEST_VALUE: "Highest class value wins",
    OverlapRule.LOWEST_VALUE: "Lowest class value wins",
}


@dataclass(frozen=True)
class MaskValues:
    """The reserved values of a label mask."""

    background_value: int = 0
    ignore_value: int = 255
    unlabelled_is_ignore: bool = False

    def __post_init__(self) -> None:
        for name in ("background_value", "ignore_value"):
            value = getattr(self, name)
            if value < 0 or value > np.iinfo(np.uint32).max:
                raise LabelValueError(f"{name} must be an unsigned integer, got {value}.")
        if self.background_value == self.ignore_value and not self.unlabelled_is_ignore:
            raise LabelValueError(
                f"The background value and the ignore value are both {self.ignore_value}; "
                "give them different values, or mark unlabelled area as ignore."
            )

    @property
    def unlabelled_value(self) -> int:
        """The value of pixels under no label."""
        return self.ignore_value if self.unlabelled_is_ignore else self.background_value


@dataclass(frozen=True)
class LabelClass:
    """One class of a label mask: its pixel value, a name and a colour ("#rrggbb")."""

    value: int
    name: str
    color: str


def class_value_from_number(raw: object, field: str, layer: str) -> int:
    """The class value of a numeric attribute; refuses fractions, negatives and NaN."""
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise LabelValueError(
            f"Field '{field}' of layer '{layer}' holds {raw!r}, which is not a class value. "
            "Use a field of whole numbers or of text class names."
        )
    value = float(raw)
    if math.isnan(value) or value < 0 or value != int(value) or value > np.iinfo(np.uint32).max:
        raise LabelValueError(
            f"Field '{field}' of layer '{layer}' holds {raw!r}; class values must be whole "
            "numbers from 0 to 4294967295. Recode the field, or use a text field of class names."
        )
    return int(value)


def text_class_name(raw: object) -> str | None:
    """The class name a class field value gives as text, without surrounding spaces; None for
    NULL (None) and for blank text: such a feature has no class (a blank name would be invisible)."""
    if raw is None:
        return None
    return str(raw).strip() or None


def assign_text_class_values(names: Iterable[str], reserved: Iterable[int]) -> dict[str, int]:
    """Give text class names values 1, 2, ... in sorted order, skipping reserved values."""
    taken = set(reserved)
    values: dict[str, int] = {}
    candidate = 1
    for name in sorted(set(names)):
        while candidate in taken:
            candidate += 1
        values[name] = candidate
        candidate += 1
    return values


def smallest_unsigned_dtype(values: Iterable[int]) -> np.dtype:
    """The smallest of uint8/uint16/uint32 that holds every value."""
    top = max(values, default=0)
    for dtype in UINT_DTYPES:
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise LabelValueError(f"Class value {top} does not fit in 32 bits.")


def check_classes_against_mask_values(classes: Iterable[LabelClass], values: MaskValues) -> None:
    """Refuse a class whose value is the ignore value: its pixels would vanish in training."""
    for label_class in classes:
        if label_class.value == values.ignore_value:
            raise LabelValueError(
                f"Class '{label_class.name}' has value {label_class.value}, which is also the "
                "ignore (nodata) value. Choose another ignore value."
            )


_NAMED_COLORS = {
    "background": "#000000",
    "building": "#e31a1c",
    "buildings": "#e31a1c",
    "urban": "#e31a1c",
    "road": "#969696",
    "roads": "#969696",
    "water": "#1f78b4",
    "vegetation": "#33a02c",
    "forest": "#1b7837",
    "tree": "#1b7837",
    "grass": "#b2df8a",
    "cropland": "#fdbf6f",
    "bare": "#cab2d6",
}
_PALETTE = (
    "#e31a1c",
    "#1f78b4",
    "#33a02c",
    "#ff7f00",
    "#6a3d9a",
    "#b15928",
    "#a6cee3",
    "#b2df8a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
    "#ffff99",
)


def default_class_color(name: str, value: int) -> str:
    """A colour for a class: a conventional one for common land-cover names, else a palette entry."""
    for word in name.lower().replace("-", "_").split("_"):
        if word in _NAMED_COLORS:
            return _NAMED_COLORS[word]
    return _PALETTE[(value - 1) % len(_PALETTE)]


def unnamed_class_name(value: int) -> str:
    """The name of a mask value that no class description names."""
    return f"class_{value}"


def make_label_classes(names_by_value: dict[int, str]) -> list[LabelClass]:
    """Label classes sorted by value, with default colours."""
    return [
        LabelClass(value, name, default_class_color(name, value))
        for value, name in sorted(names_by_value.items())
    ]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' to an (r, g, b) tuple."""
    digits = color.lstrip("#")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
