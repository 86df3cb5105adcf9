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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VALUE_ONLY = re.compile(r"^(?:class[_ ]?)?(\d+)$")


def _key(name: str) -> str:
    return name.strip().casefold()


def is_real_name(value: int, name: str) -> bool:
    """Whether ``name`` says more than the value itself."""
    key = _key(name)
    only_value = _VALUE_ONLY.match(key)
    return bool(key) and not (only_value and int(only_value.group(1)) == value)


@dataclass(frozen=True)
class ClassMatching:
    """Reference values to rename (``{old: new}``), the names of the matched values, and how."""

    reference_values: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    by_name: bool = False
    unmatched_reference: tuple[str, ...] = ()


def match_classes(
    reference: dict[int, str], prediction: dict[int, str], extra_values: set[int] | frozenset = frozenset()
) -> ClassMatching:
    """Match reference classes to predicted classes (see the module docstring).

    ``extra_values`` are values known to occur (in either raster) that no name covers; new values
    are chosen above them too."""
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
