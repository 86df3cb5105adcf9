"""Classification of image crops: one label per tile or per feature. QGIS-free.

A classifier maps a batch of crops [B, bands, H, W] (native pixel values; normalised here with
the model's spec) to one score per class. The first output head is read as:

* [B, C] with C >= 2, or [B, C, 1, 1]: probabilities when every value lies in [0, 1] and every
  row sums to 1 (within ``SUM_TOLERANCE``); otherwise logits, turned into probabilities by a
  softmax. The test is made per batch, so a batch is never half softmaxed;
* [B, 1] (or [B]): one score for the model's class 0 against "background", as Deepness reads
  one-channel outputs; values outside [0, 1] are logits and go through a sigmoid. The result has
  two classes: 0 = background, 1 = the model's class;
* anything with a spatial extent ([B, C, H, W] larger than 1 x 1, [B, H, W]) is a segmentation
  output and is refused: such models run in rsdl:segment.

Crops are squares of ``tile_size`` pixels, chosen by ``core/tiling/policy.py``; which tools run
which model types is ``core/contract/model_types.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..core.contract.model_spec import ModelSpec, ModelType
from ..core.errors import ModelError, RsdlError
from ..core.labels.label_rules import LabelClass, default_class_color
from ..core.tiling.layouts import TileLayout, overhang_end_starts
from .backends import ModelBackend, out_of_memory_error
from .probabilities import in_unit_range, softmax

__all__ = [
    "SEGMENT_HINT",
    "SUM_TOLERANCE",
    "Classification",
    "Classifier",
    "TileGrid",
    "class_probabilities",
    "classifier_class_names",
    "classify_in_batches",
    "crop_square",
    "probability_field_names",
]

SUM_TOLERANCE = 1e-3
SEGMENT_HINT = "this is a segmentation model, use rsdl:segment"


@dataclass(frozen=True)
class Classification:
    """The classes of a batch: winning class ids (B,), their probabilities (B,), all (B, C)."""

    class_ids: np.ndarray
    best_probabilities: np.ndarray
    probabilities: np.ndarray

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray) -> Classification:
        ids = probabilities.argmax(axis=1)
        return cls(ids, probabilities[np.arange(len(ids)), ids], probabilities)


def class_probabilities(output: np.ndarray) -> np.ndarray:
    """(B, C) float32 probabilities from one classifier output head (see the module docstring)."""
    values = np.asarray(output, dtype=np.float32)
    if values.ndim == 4 and values.shape[2:] == (1, 1):
        values = values[:, :, 0, 0]
    elif values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ModelError(
            f"The model outputs {list(values.shape)} for a batch of {len(values)} crops: a value per "
            f"pixel, not one label per crop; {SEGMENT_HINT}."
        )
    if values.shape[1] == 1:
        score = values[:, 0] if in_unit_range(values) else 1.0 / (1.0 + np.exp(-values[:, 0]))
        return np.stack([1.0 - score, score], axis=1).astype(np.float32)
    sums_to_one = np.allclose(values.sum(axis=1), 1.0, atol=SUM_TOLERANCE)
    if in_unit_range(values) and sums_to_one:
        return values
    return softmax(values).astype(np.float32)


def classifier_class_names(spec: ModelSpec, channels: int) -> dict[int, str]:
    """Names of the classes ``class_probabilities`` returns for an output of ``channels``.

    A one-channel output is "background" against the spec's class 0 (Deepness), unless the spec
    names two classes (rsdl's background + class), which are then used as they are.
    """
    if channels == 1:
        if len(spec.class_names) == 2:
            return {0: spec.class_name(0), 1: spec.class_name(1)}
        return {0: "background", 1: spec.class_names.get(0, "foreground")}
    return {value: spec.class_name(value) for value in range(channels)}


def probability_field_names(names: dict[int, str]) -> list[str]:
    """``p_<name>`` per class, sanitised to [a-z0-9_] and unique (``_<value>`` added on a clash)."""
    fields: list[str] = []
    for value, name in sorted(names.items()):
        stem = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or str(value)
        field = f"p_{stem}"
        if field in fields:
            field = f"{field}_{value}"
        fields.append(field)
    return fields


class Classifier:
    """A model ready to classify crops of ``tile_size`` pixels; one probe pass checks its output."""

    def __init__(self, backend: ModelBackend, spec: ModelSpec, tile_size: int) -> None:
        self.backend = backend
        self.spec = spec
        self.tile_size = tile_size
        probe = backend.run(np.zeros((1, backend.input_channels, tile_size, tile_size), dtype=np.float32))
        output = probe[0]
        class_probabilities(output)  # refuses spatial outputs before any pixel is read
        self.channels = output.shape[1] if output.ndim > 1 else 1
        self.class_names = classifier_class_names(spec, self.channels)
        warnings = []
        if len(probe) > 1:
            warnings.append(f"The model has {len(probe)} outputs; only the first is used.")
        if spec.model_type is ModelType.SEGMENTOR:
            warnings.append(
                "The model's metadata says 'Segmentor' (or has no 'model_type'), but it outputs one "
                "score per class, so it is run as a classifier."
            )
        self.warnings = tuple(warnings)

    @property
    def classes(self) -> list[LabelClass]:
        """Every class with its colour: the spec's ``class_colors``, else a default one.

        A one-channel output's class 1 is the spec's class 0, so it takes that class's colour.
        """
        shift = 1 if self.channels == 1 and len(self.spec.class_names) != 2 else 0
        return [
            LabelClass(
                value,
                name,
                self.spec.class_colors.get(value - shift) or default_class_color(name, value + 1),
            )
            for value, name in sorted(self.class_names.items())
        ]

    def classify(self, crops: np.ndarray) -> Classification:
        """Classify a (B, bands, tile, tile) batch of native pixel values."""
        try:
            outputs = self.backend.run(self.spec.normalize(crops))
        except MemoryError as error:
            raise out_of_memory_error(self.backend, len(crops), "crops", self.tile_size, error) from None
        return Classification.from_probabilities(class_probabilities(outputs[0]))


def classify_in_batches(
    classifier: Classifier, crops: Iterable[tuple[int, np.ndarray]], batch_size: int
) -> Iterator[tuple[np.ndarray, Classification]]:
    """Classify (key, crop) pairs ``batch_size`` at a time; yields (keys, classification) per batch.

    ``crops`` is consumed lazily, so only one batch of crops is held at a time.
    """
    if batch_size < 1:
        raise RsdlError(f"The batch size must be at least 1, got {batch_size}.")
    keys: list[int] = []
    batch: list[np.ndarray] = []
    for key, crop in crops:
        keys.append(key)
        batch.append(crop)
        if len(batch) == batch_size:
            yield np.asarray(keys, dtype=np.int64), classifier.classify(np.stack(batch))
            keys, batch = [], []
    if batch:
        yield np.asarray(keys, dtype=np.int64), classifier.classify(np.stack(batch))


class TileGrid(TileLayout):
    """Tiles of ``tile`` px every ``stride`` px from a grid's top-left corner, in row-major order.

    The last tile of a row or column may overhang the grid (its outside part is padded when read);
    a stride larger than the tile leaves gaps (the ``overhang_end_starts`` rule of
    ``core/tiling/layouts.py``). Windows are made on demand, so a huge grid costs little memory.
    """

    def __init__(self, width: int, height: int, tile: int, stride: int) -> None:
        if tile < 1 or stride < 1:
            raise RsdlError(f"Tile size and stride must be at least 1 pixel, got {tile}, {stride}.")
        if width < 1 or height < 1:
            raise RsdlError(f"The grid is empty ({width} x {height} pixels).")
        super().__init__(width, height, tile, stride, overhang_end_starts)

    @property
    def columns(self) -> int:
        return self.n_tile_cols

    @property
    def rows(self) -> int:
        return self.n_tile_rows


def crop_square(
    bounds: tuple[float, float, float, float], margin_percent: float, min_side: float
) -> tuple[float, float, float, float]:
    """The square crop around ``bounds`` (xmin, ymin, xmax, ymax): centred on them, as wide as
    their longer side plus ``margin_percent`` of it on every side; a point's side is ``min_side``."""
    xmin, ymin, xmax, ymax = bounds
    side = max(xmax - xmin, ymax - ymin)
    if side <= 0:
        side = min_side
    half = side * (0.5 + margin_percent / 100.0)
    cx, cy = (xmin + xmax) / 2.0, (ymin + ymax) / 2.0
    return cx - half, cy - half, cx + half, cy + half
