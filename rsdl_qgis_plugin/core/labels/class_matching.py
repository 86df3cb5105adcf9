"""Which reference class is which predicted class, when the two rasters number classes differently.

A model numbers its classes its own way (background 0, building 1, water 2); labels rasterized
from a text field number them alphabetically (building 1, vegetation 2, water 3). When both
rasters name their classes, classes are matched by name:

- names are compared ignoring case and surrounding spaces; a name that only repeats the value
  ("3", "class_3", as given to unnamed numeric classes) is no name;
- a reference class named like a predicted class takes the predicted class's value;
- a named reference class the prediction does not know keeps its value, unless that value is a
  predicted class or the new value of another reference class: then it gets a new value above
  every value in use, so that it never merges with a class it is not;
- unnamed reference values keep their value.

When the rasters share no class name (or either names none), classes are matched by value.

Foreground classes (any real name but "background") decide two more cases:

- the reference has exactly one foreground class whose name was not chosen by anyone (the layer
  or file name of vector labels without a class field, e.g. 'buildings_all') and the prediction
  has exactly one foreground class: the two are the same class (``single_class`` says which);
- otherwise, when both name foreground classes and no reference one is named like a predicted
  one, ``no_shared_foreground`` is set: a by-name match would score every foreground pixel as an
  error, so the caller refuses and says how to name the classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .label_rules import LabelClass, MaskValues

__all__ = [
    "BACKGROUND_NAMES",
    "ClassMatching",
    "is_background_name",
    "is_real_name",
    "match_classes",
    "reference_class_names",
]

BACKGROUND_NAMES = frozenset({"background", "_background"})  # also left out of rsdl:segment's polygons

_VALUE_ONLY = re.compile(r"^(?:class[_ ]?)?(\d+)$")


def _key(name: str) -> str:
    return name.strip().casefold()


def is_real_name(value: int, name: str) -> bool:
    """Whether ``name`` says more than the value itself."""
    key = _key(name)
    only_value = _VALUE_ONLY.match(key)
    return bool(key) and not (only_value and int(only_value.group(1)) == value)


def is_background_name(name: str) -> bool:
    return _key(name) in BACKGROUND_NAMES


def reference_class_names(classes: Iterable[LabelClass], values: MaskValues) -> dict[int, str]:
    """The names of a label mask's values: its classes, and 'background' for its background."""
    names = {c.value: c.name for c in classes}
    if not values.unlabelled_is_ignore:
        names.setdefault(values.background_value, "background")
    return names


@dataclass(frozen=True)
class ClassMatching:
    """Reference values to rename (``{old: new}``), the names of the matched values, and how.

    ``single_class`` is (reference name, predicted name) when the single-class rule matched them;
    ``no_shared_foreground`` is set when both sides name foreground classes and share none."""

    reference_values: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    by_name: bool = False
    unmatched_reference: tuple[str, ...] = ()
    single_class: tuple[str, str] | None = None
    no_shared_foreground: bool = False


def _foreground(names: dict[int, str]) -> dict[int, str]:
    return {v: n for v, n in names.items() if is_real_name(v, n) and not is_background_name(n)}


def match_classes(
    reference: dict[int, str],
    prediction: dict[int, str],
    extra_values: set[int] | frozenset = frozenset(),
    reference_unnamed: bool = False,
) -> ClassMatching:
    """Match reference classes to predicted classes (see the module docstring).

    ``extra_values`` are values known to occur (in either raster) that no name covers; new values
    are chosen above them too. ``reference_unnamed``: the reference's class names were not chosen
    (layer or file names), so a single one may stand for the prediction's single class."""
    reference_foreground, predicted_foreground = _foreground(reference), _foreground(prediction)
    if not reference_foreground or not predicted_foreground:
        return _match_by_name(reference, prediction, extra_values)
    predicted_keys = {_key(name) for name in predicted_foreground.values()}
    if any(_key(name) in predicted_keys for name in reference_foreground.values()):
        return _match_by_name(reference, prediction, extra_values)
    if reference_unnamed and len(reference_foreground) == 1 and len(predicted_foreground) == 1:
        [(value, name)] = reference_foreground.items()
        [predicted_name] = predicted_foreground.values()
        matching = _match_by_name({**reference, value: predicted_name}, prediction, extra_values)
        return replace(matching, single_class=(name, predicted_name))
    return replace(_match_by_name(reference, prediction, extra_values), no_shared_foreground=True)


def _match_by_name(
    reference: dict[int, str], prediction: dict[int, str], extra_values: set[int] | frozenset
) -> ClassMatching:
    reference_named = {v: n for v, n in reference.items() if is_real_name(v, n)}
    prediction_named = {v: n for v, n in prediction.items() if is_real_name(v, n)}
    by_key = {_key(name): value for value, name in sorted(prediction_named.items())}
    shared = {_key(name) for name in reference_named.values()} & set(by_key)
    names = {**reference, **prediction}  # the prediction's names win on equal values
    if not shared:
        return ClassMatching(names=names)

    renamed: dict[int, int] = {}
    for value, name in reference_named.items():
        if _key(name) in by_key:
            renamed[value] = by_key[_key(name)]
    taken = set(prediction_named) | set(renamed.values())
    top = max([*reference, *prediction, *extra_values, *renamed.values()], default=0)
    unmatched = []
    for value, name in sorted(reference_named.items()):
        if value in renamed:
            continue
        unmatched.append(name)
        if value in taken:
            top += 1
            renamed[value] = top
            taken.add(top)
    names = dict(prediction)
    for value, name in reference.items():
        names.setdefault(renamed.get(value, value), name)
    identity = {old: new for old, new in renamed.items() if old != new}
    return ClassMatching(identity, names, True, tuple(unmatched))
