"""Scoring a class raster against reference labels whose classes may be numbered differently.

rsdl:evaluate counts (reference, predicted) pixel pairs, then: matches the reference classes to
the predicted ones (``match_for_scoring``: by name or by value, with the rules of
``core/labels/class_matching.py``), says what the match did (notes for the log), refuses a by-name
match that would score every labelled pixel as an error (``no_shared_class_error``), and scores
the pairs with the reference values renamed (``score_matched``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RsdlError
from ..labels.class_matching import ClassMatching, match_classes
from .confusion import ConfusionMatrix, PairCounts

__all__ = [
    "ScoringMatch",
    "match_for_scoring",
    "no_shared_class_error",
    "score_matched",
]


@dataclass(frozen=True)
class ScoringMatch:
    """A class matching and what to tell the user about it: ``infos`` go to the log before
    ``warnings``."""

    matching: ClassMatching
    infos: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _listed(names: dict[int, str]) -> str:
    return ", ".join(f"'{name}' ({value})" for value, name in sorted(names.items()))


def no_shared_class_error(
    reference: dict[int, str], prediction: dict[int, str], labels_from_mask: bool
) -> RsdlError:
    """The error for reference and predicted classes that share no name, naming the way out
    (which depends on whether the labels came as a mask or as vector layers)."""
    if labels_from_mask:
        fix = (
            "rasterize the labels again (rsdl:rasterizelabels) with FIELD holding class names, or "
            "NAME_FIELD naming each class value, as the model names them"
        )
    else:
        fix = (
            "give FIELD (a field of class names) or NAME_FIELD (a field naming each class value) "
            "so that the labels name their classes as the model does, or rename the label layers "
            "after the model's classes"
        )
    return RsdlError(
        f"No reference class is named like a class of the class raster: the reference has "
        f"{_listed(reference)}, the class raster {_listed(prediction)}. Scored by name, every "
        f"labelled pixel would count as an error. To fix it, {fix} (make demo: LABEL_FIELD, "
        "LABEL_NAME_FIELD); or, when the values already mean the same classes, set CLASS_MATCHING "
        "to 1 (by value)."
    )


def match_for_scoring(
    reference: dict[int, str],
    prediction: dict[int, str],
    values: set[int],
    by_value: bool,
    *,
    reference_unnamed: bool = False,
    labels_from_mask: bool = True,
) -> ScoringMatch:
    """Which reference class is which predicted class (CLASS_MATCHING), and what to log about it.

    ``values`` occur in either raster; ``reference_unnamed``: the reference's class names are
    layer or file names. Raises ``no_shared_class_error`` when both sides name foreground classes
    and share none."""
    if by_value:
        return ScoringMatch(ClassMatching(names={**reference, **prediction}))
    matching = match_classes(reference, prediction, values, reference_unnamed=reference_unnamed)
    if matching.no_shared_foreground:
        raise no_shared_class_error(reference, prediction, labels_from_mask)
    infos: list[str] = []
    if matching.single_class is not None:
        label_name, predicted_name = matching.single_class
        infos.append(
            f"The labels' only class '{label_name}' is named after its layer, not by a field; it is "
            f"scored as the class raster's only class '{predicted_name}'. Give FIELD or NAME_FIELD "
            "to name the reference classes yourself."
        )
    if not matching.by_name:
        warnings = ()
        if reference and prediction:
            warnings = (
                "The reference and the class raster share no class name; classes are matched "
                "by value. Check that the values mean the same classes.",
            )
        return ScoringMatch(matching, tuple(infos), warnings)
    for old, new in sorted(matching.reference_values.items()):
        infos.append(
            f"Reference class '{reference.get(old, old)}' ({old}) is scored as value {new} "
            f"('{matching.names.get(new, new)}')."
        )
    warnings = ()
    if matching.unmatched_reference:
        warnings = (
            "Reference classes the class raster does not name (every pixel of theirs counts as "
            f"an error): {', '.join(matching.unmatched_reference)}.",
        )
    return ScoringMatch(matching, tuple(infos), warnings)


def score_matched(
    counts: PairCounts, matching: ClassMatching, prediction: dict[int, str], reference: dict[int, str]
) -> tuple[ConfusionMatrix, dict[str, Any]]:
    """The confusion matrix of the matched classes and its metrics (``class_matching`` says how).

    Every named class is in the matrix, occurring or not: a class never predicted and absent
    from the reference still shows as a row of zeros."""
    known_values = set(prediction) | {matching.reference_values.get(v, v) for v in reference}
    matrix = ConfusionMatrix.from_counts(counts.relabelled(matching.reference_values), known_values)
    metrics = matrix.as_dict(matching.names)
    metrics["class_matching"] = "by name" if matching.by_name else "by value"
    return matrix, metrics
