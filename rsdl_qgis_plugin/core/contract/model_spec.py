"""The model contract: what a model file says about itself (its spec), shared by plugin and training.

ONNX models carry the spec in ``metadata_props``, TorchScript models as the extra file
``rsdl_spec.json`` (a JSON object of the same key -> value strings). Values are JSON-encoded
strings; a value that is not valid JSON is taken as a plain string (``Segmentor``). Keys and
defaults (the peer plugin Deepness reads and writes the keys marked D):

=========================  ================================  ====================================
key                        meaning                           when missing
=========================  ================================  ====================================
``model_type`` D           Segmentor, Classifier, Regressor, Segmentor
                           Detector, InstanceSegmentor
                           (case-insensitive);
                           Deepness's Recognition and
                           Superresolution are read but not
                           run; any other value is UNKNOWN
``class_names`` D          ``{"0": "name"}``; a list of such None (``class_<value>``)
                           dicts, one per output head; a
                           list of names; Python-literal
                           dicts with int keys. ``names`` D
                           (YOLO) is read as well
``class_colors``           ``{"0": "#rrggbb"}`` (head 0)     none (the styler picks)
``resolution`` D           cm per pixel at training          None
``tile_size`` D            tile side in pixels; also read    None
                           from ``tiles_size`` D
``tiles_overlap`` D        percent of the tile               None
``standardization_mean`` D per channel (or one for all)      (0.0,)
``standardization_std`` D  per channel (or one for all)      (1.0,)
``max_pixel_value``        the scale before standardising    255
``bands``                  1-based raster bands, in order    None (the first N bands)
``seg_thresh`` D           probability threshold of every    None: one channel at 0.5,
                           segmentation head, as Deepness    several channels by plain
                           applies it: one channel is class  argmax (no threshold)
                           1 where it reaches (>=) the
                           threshold; several channels: the
                           argmax of those that reach it,
                           class 0 where none does. rsdl
                           spec version 1 wrote 0.5 into
                           every file: read as absent
``ignore_index``           label value never predicted       None
``det_conf`` D             detector confidence threshold     None (rsdl:detect: 0.25)
                           (0 to 1)
``det_iou_thresh`` D       detector NMS IoU threshold        None (rsdl:detect: 0.45)
                           (0 to 1)
``det_type`` D             Deepness's detector output        None (the output shapes decide:
                           layout: YOLO_v5_or_v7_default,    ``detection_layouts.py``)
                           YOLO_v6, YOLO_v9,
                           YOLO_Ultralytics,
                           YOLO_Ultralytics_segmentation,
                           YOLO_Ultralytics_obb
``rsdl_spec_version``      version of this contract          0 (not written by rsdl)
``training``               metrics, data provenance (JSON)   {}
=========================  ================================  ====================================

Every other key (Deepness's ``seg_small_segment``, ``reg_output_scaling``...) is
kept verbatim in ``extra`` and written back unchanged. ``to_metadata`` writes the tile size under
both ``tile_size`` and ``tiles_size``, because Deepness versions read one or the other.

Pixels are normalised as Deepness does, ``(x / max_pixel_value - mean) / std``; Deepness itself
always divides by 255, so a model with another ``max_pixel_value`` only runs correctly in rsdl.
"""

from __future__ import annotations

import ast
import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelSpecError
from ..labels.label_rules import unnamed_class_name

__all__ = [
    "DEFAULT_MAX_PIXEL_VALUE",
    "DEFAULT_SEG_THRESH",
    "DETECTOR_TYPES",
    "SPEC_VERSION",
    "TORCHSCRIPT_SPEC_FILE",
    "ModelSpec",
    "ModelType",
]

SPEC_VERSION = 2  # 2: seg_thresh is written only when chosen, and thresholds every channel
DEFAULT_MAX_PIXEL_VALUE = 255.0
DEFAULT_SEG_THRESH = 0.5
TORCHSCRIPT_SPEC_FILE = "rsdl_spec.json"
# Deepness's ``det_type`` values (its DetectorType), as it spells them.
DETECTOR_TYPES = (
    "YOLO_v5_or_v7_default",
    "YOLO_v6",
    "YOLO_v9",
    "YOLO_Ultralytics",
    "YOLO_Ultralytics_segmentation",
    "YOLO_Ultralytics_obb",
)
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class ModelType(str, enum.Enum):
    """What a model predicts. Which tools run which type: ``model_types.py``."""

    SEGMENTOR = "Segmentor"
    CLASSIFIER = "Classifier"
    REGRESSOR = "Regressor"
    DETECTOR = "Detector"
    INSTANCE_SEGMENTOR = "InstanceSegmentor"
    # Deepness types that rsdl reads (to describe the model) but does not run.
    RECOGNITION = "Recognition"
    SUPERRESOLUTION = "Superresolution"
    # Any other declared type; the declared text is kept in ``ModelSpec.extra["model_type"]``.
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str) -> ModelType:
        """The type named by ``text`` (case-insensitive, as Deepness capitalises it), else UNKNOWN."""
        for member in cls:
            if member is not cls.UNKNOWN and member.value.lower() == text.strip().lower():
                return member
        return cls.UNKNOWN


# Metadata keys this module interprets; every other key goes to ``extra``.
_KNOWN_KEYS = frozenset(
    {
        "model_type",
        "class_names",
        "names",
        "class_colors",
        "resolution",
        "tile_size",
        "tiles_size",
        "tiles_overlap",
        "standardization_mean",
        "standardization_std",
        "max_pixel_value",
        "bands",
        "seg_thresh",
        "ignore_index",
        "rsdl_spec_version",
        "training",
        "det_conf",
        "det_iou_thresh",
        "det_type",
    }
)


@dataclass(frozen=True)
class ModelSpec:
    """A model's self-description; see the module docstring for keys and defaults.

    ``class_names`` names the classes (channels) of the first output head;
    ``more_head_class_names`` those of heads 2, 3, ... (Deepness multi-head models).
    """

    model_type: ModelType = ModelType.SEGMENTOR
    class_names: dict[int, str] = field(default_factory=dict)
    class_colors: dict[int, str] = field(default_factory=dict)
    resolution_cm: float | None = None
    tile_size: int | None = None
    tiles_overlap_percent: float | None = None
    standardization_mean: tuple[float, ...] = (0.0,)
    standardization_std: tuple[float, ...] = (1.0,)
    max_pixel_value: float = DEFAULT_MAX_PIXEL_VALUE
    bands: tuple[int, ...] | None = None
    # None: the file carries no 'seg_thresh' (one-channel heads use DEFAULT_SEG_THRESH, several
    # channels a plain argmax); a value applies to every head, as in Deepness.
    seg_thresh: float | None = None
    ignore_index: int | None = None
    spec_version: int = SPEC_VERSION
    training: dict = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    more_head_class_names: tuple[dict[int, str], ...] = ()
    det_conf: float | None = None
    det_iou_thresh: float | None = None
    det_type: str | None = None  # one of DETECTOR_TYPES

    def __post_init__(self) -> None:
        # Coerce sequences given as lists (training code, JSON) so equality and hashing of
        # tuples hold, then validate: a bad spec fails here, not in the middle of a run.
        set_ = object.__setattr__
        if not isinstance(self.model_type, ModelType):
            set_(self, "model_type", ModelType.parse(str(self.model_type)))
        set_(self, "standardization_mean", tuple(float(v) for v in self.standardization_mean))
        set_(self, "standardization_std", tuple(float(v) for v in self.standardization_std))
        if self.bands is not None:
            set_(self, "bands", tuple(int(b) for b in self.bands))
        set_(self, "more_head_class_names", tuple(self.more_head_class_names))
        if self.det_type is not None:
            set_(self, "det_type", _to_detector_type(self.det_type))
        self._validate()

    def _validate(self) -> None:
        if not self.standardization_mean or not self.standardization_std:
            raise ModelSpecError("'standardization_mean' and 'standardization_std' must not be empty.")
        if any(s == 0 or not math.isfinite(s) for s in self.standardization_std):
            raise ModelSpecError(
                f"'standardization_std' is {list(self.standardization_std)}; every value must be a "
                "finite non-zero number."
            )
        if not (self.max_pixel_value > 0 and math.isfinite(self.max_pixel_value)):
            raise ModelSpecError(f"'max_pixel_value' must be a positive number, got {self.max_pixel_value}.")
        if self.tile_size is not None and self.tile_size < 1:
            raise ModelSpecError(f"'tile_size' must be a positive number of pixels, got {self.tile_size}.")
        if self.tiles_overlap_percent is not None and not 0 <= self.tiles_overlap_percent < 100:
            raise ModelSpecError(
                f"'tiles_overlap' is a percentage of the tile from 0 to 99, got {self.tiles_overlap_percent}."
            )
        if self.resolution_cm is not None and not self.resolution_cm > 0:
            raise ModelSpecError(f"'resolution' (cm per pixel) must be positive, got {self.resolution_cm}.")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise ModelSpecError(f"'bands' lists 1-based raster band numbers, got {list(self.bands)}.")
        if self.seg_thresh is not None and not 0.0 <= self.seg_thresh <= 1.0:
            raise ModelSpecError(f"'seg_thresh' must lie between 0 and 1, got {self.seg_thresh}.")
        for key, threshold in (("det_conf", self.det_conf), ("det_iou_thresh", self.det_iou_thresh)):
            if threshold is not None and not 0.0 <= threshold <= 1.0:
                raise ModelSpecError(f"'{key}' must lie between 0 and 1, got {threshold}.")
        for value, color in self.class_colors.items():
            if not isinstance(color, str) or not _HEX_COLOR.match(color):
                raise ModelSpecError(f"'class_colors' of class {value} is {color!r}; use '#rrggbb'.")

    # -- reading and writing ------------------------------------------------------------------

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ModelSpec:
        """The spec from ONNX ``metadata_props`` (key -> JSON text); missing keys take defaults.

        Values that are not JSON are taken as plain strings, and values that are already decoded
        (a TorchScript spec file written as plain JSON) are accepted as they are.
        """
        values = {key: _decode(value) for key, value in metadata.items()}
        extra = {key: _as_text(value) for key, value in metadata.items() if key not in _KNOWN_KEYS}

        model_type = ModelType.SEGMENTOR
        if "model_type" in values:
            declared = values["model_type"]
            model_type = ModelType.parse(str(declared))
            if model_type is ModelType.UNKNOWN:
                extra["model_type"] = _as_text(metadata["model_type"])  # kept so it round-trips

        names_key = "class_names" if "class_names" in values else "names"
        heads = _class_names_per_head(values[names_key], names_key) if names_key in values else []

        tile_key = "tile_size" if "tile_size" in values else "tiles_size"
        version = _optional(values, "rsdl_spec_version", _to_int, 0)
        if version > SPEC_VERSION:
            raise ModelSpecError(
                f"The model's 'rsdl_spec_version' is {version}, but this rsdl reads versions up to "
                f"{SPEC_VERSION}. Update the rsdl plugin."
            )
        training = values.get("training", {})
        if not isinstance(training, dict):
            raise ModelSpecError(f"Model metadata key 'training' must be a JSON object, got {training!r}.")
        bands = _optional(values, "bands", _to_number_tuple)

        return cls(
            model_type=model_type,
            class_names=heads[0] if heads else {},
            class_colors=_optional(values, "class_colors", _to_class_colors, {}),
            resolution_cm=_optional(values, "resolution", _to_float),
            tile_size=_optional(values, tile_key, _to_int),
            tiles_overlap_percent=_optional(values, "tiles_overlap", _to_float),
            standardization_mean=_optional(values, "standardization_mean", _to_number_tuple, (0.0,)),
            standardization_std=_optional(values, "standardization_std", _to_number_tuple, (1.0,)),
            max_pixel_value=_optional(values, "max_pixel_value", _to_float, DEFAULT_MAX_PIXEL_VALUE),
            bands=None if bands is None else tuple(_to_int(b) for b in bands),
            seg_thresh=_declared_seg_thresh(_optional(values, "seg_thresh", _to_float), version),
            ignore_index=_optional(values, "ignore_index", _to_int),
            spec_version=version,
            training=training,
            extra=extra,
            more_head_class_names=tuple(heads[1:]),
            det_conf=_optional(values, "det_conf", _to_float),
            det_iou_thresh=_optional(values, "det_iou_thresh", _to_float),
            det_type=_optional(values, "det_type", str),
        )

    def to_metadata(self) -> dict[str, str]:
        """The spec as ONNX ``metadata_props`` (JSON-encoded values), readable by Deepness too."""
        metadata = dict(self.extra)
        if self.model_type is not ModelType.UNKNOWN or "model_type" not in metadata:
            metadata["model_type"] = json.dumps(self.model_type.value)
        heads = self.head_class_names
        if heads:
            encoded = [{str(k): v for k, v in sorted(head.items())} for head in heads]
            # One head as a plain dict: the form every Deepness version reads.
            metadata["class_names"] = json.dumps(encoded[0] if len(encoded) == 1 else encoded)
        if self.class_colors:
            metadata["class_colors"] = json.dumps({str(k): v for k, v in sorted(self.class_colors.items())})
        if self.resolution_cm is not None:
            metadata["resolution"] = json.dumps(self.resolution_cm)
        if self.tile_size is not None:
            metadata["tile_size"] = metadata["tiles_size"] = json.dumps(self.tile_size)
        if self.tiles_overlap_percent is not None:
            metadata["tiles_overlap"] = json.dumps(_compact_number(self.tiles_overlap_percent))
        metadata["standardization_mean"] = json.dumps(list(self.standardization_mean))
        metadata["standardization_std"] = json.dumps(list(self.standardization_std))
        metadata["max_pixel_value"] = json.dumps(_compact_number(self.max_pixel_value))
        if self.bands is not None:
            metadata["bands"] = json.dumps(list(self.bands))
        if self.seg_thresh is not None:
            metadata["seg_thresh"] = json.dumps(self.seg_thresh)
        if self.ignore_index is not None:
            metadata["ignore_index"] = json.dumps(self.ignore_index)
        if self.spec_version:
            metadata["rsdl_spec_version"] = json.dumps(self.spec_version)
        if self.training:
            metadata["training"] = json.dumps(self.training, sort_keys=True)
        for key, value in (
            ("det_conf", self.det_conf),
            ("det_iou_thresh", self.det_iou_thresh),
            ("det_type", self.det_type),
        ):
            if value is not None:
                metadata[key] = json.dumps(value)
        return metadata

    # -- use ----------------------------------------------------------------------------------

    @property
    def head_class_names(self) -> tuple[dict[int, str], ...]:
        """Class names of every output head that has names (empty when the model names none)."""
        if not self.class_names and not self.more_head_class_names:
            return ()
        return (self.class_names, *self.more_head_class_names)

    @property
    def one_channel_threshold(self) -> float:
        """The threshold of a one-channel (sigmoid) head: ``seg_thresh``, else DEFAULT_SEG_THRESH."""
        return DEFAULT_SEG_THRESH if self.seg_thresh is None else self.seg_thresh

    @property
    def declared_model_type(self) -> str:
        """The model type as the file states it (the raw text for an UNKNOWN type)."""
        if self.model_type is ModelType.UNKNOWN and "model_type" in self.extra:
            return str(_decode(self.extra["model_type"]))
        return self.model_type.value

    def class_name(self, value: int, head: int = 0) -> str:
        """The name of class ``value`` of output ``head``; ``class_<value>`` when unnamed."""
        heads = self.head_class_names
        names = heads[head] if head < len(heads) else {}
        return names.get(value, unnamed_class_name(value))

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """``(pixels / max_pixel_value - mean) / std`` per channel, as float32.

        ``pixels`` is (..., C, H, W) of any dtype; mean and std have one value per channel or
        one for all.
        """
        if pixels.ndim < 3:
            raise ModelSpecError(f"Pixels to normalise must be (..., channels, rows, cols): {pixels.shape}.")
        channels = pixels.shape[-3]
        mean = self._per_channel("standardization_mean", self.standardization_mean, channels)
        std = self._per_channel("standardization_std", self.standardization_std, channels)
        out = np.array(pixels, dtype=np.float32, copy=True)
        out /= np.float32(self.max_pixel_value)
        out -= mean
        out /= std
        return out

    @staticmethod
    def _per_channel(key: str, values: tuple[float, ...], channels: int) -> np.ndarray:
        if len(values) not in (1, channels):
            raise ModelSpecError(
                f"The model's '{key}' has {len(values)} values but the input has {channels} channels; "
                "give one value per channel (or one for all) in the model's metadata."
            )
        return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


# -- decoding helpers ---------------------------------------------------------------------------


def _decode(value: Any) -> Any:
    """JSON text to a value; non-JSON text stays a string; decoded values pass through."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _compact_number(value: float) -> float | int:
    """Whole numbers as ints (Deepness reads some keys with int())."""
    return int(value) if float(value).is_integer() else value


def _optional(values: dict[str, Any], key: str, convert: Any, default: Any = None) -> Any:
    """``convert(values[key])``, ``default`` when the key is absent or null."""
    if values.get(key) is None:
        return default
    try:
        return convert(values[key])
    except (TypeError, ValueError) as error:
        raise ModelSpecError(
            f"Model metadata key '{key}' has the value {values[key]!r}, which is not usable: {error}. "
            "Fix the model's metadata (see the rsdl model contract)."
        ) from None


def _declared_seg_thresh(value: float | None, version: int) -> float | None:
    """rsdl's spec version 1 wrote ``seg_thresh`` 0.5 into every file, as its default rather than a
    choice (then it applied to one-channel heads only): read that as no threshold, so released
    multi-class models keep their plain argmax."""
    return None if version == 1 and value == DEFAULT_SEG_THRESH else value


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _to_int(value: Any) -> int:
    number = _to_float(value)
    if not number.is_integer():
        raise ValueError("expected a whole number")
    return int(number)


def _to_number_tuple(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):  # tolerate "0.5, 0.5, 0.5" and "[0.5 0.5]"
        value = [part for part in re.split(r"[\s,]+", value.strip().strip("[]()")) if part]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if not value:
        raise ValueError("expected at least one number")
    return tuple(_to_float(v) for v in value)


def _to_class_key(key: Any) -> int:
    if isinstance(key, bool):
        raise ValueError(f"class key {key!r} is not a whole number")
    try:
        return _to_int(key)
    except (TypeError, ValueError):
        raise ValueError(f"class key {key!r} is not a whole number") from None


def _to_class_dict(value: Any) -> dict[int, str]:
    """{"0": "a"} or ["a", "b"] -> {0: "a", 1: "b"}."""
    if isinstance(value, dict):
        return {_to_class_key(k): str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return dict(enumerate(value))
    raise ValueError('expected a JSON object {"0": "name", ...} or a list of names')


def _class_names_per_head(value: Any, key: str) -> list[dict[int, str]]:
    """Deepness writes one dict, a list of dicts (one per head), or Python dict literals."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)  # literals only: never evaluates code
        except (ValueError, SyntaxError):
            raise ModelSpecError(
                f"Model metadata key '{key}' is {value!r}, which is neither JSON nor a dict literal; "
                'write it as {"0": "background", "1": "building"}.'
            ) from None
    per_head = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
    heads = value if per_head else [value]
    try:
        return [_to_class_dict(head) for head in heads]
    except ValueError as error:
        raise ModelSpecError(
            f"Model metadata key '{key}' is not usable: {error}. Write it as "
            '{"0": "background", "1": "building"} (or a list of such objects, one per output).'
        ) from None


def _to_detector_type(value: Any) -> str:
    """Deepness's spelling of a known ``det_type`` (matched case-insensitively); else refused."""
    text = str(value).strip()
    for known in DETECTOR_TYPES:
        if known.lower() == text.lower():
            return known
    raise ModelSpecError(
        f"Model metadata key 'det_type' is {text!r}, which is no detector type rsdl knows; use one of "
        f"{', '.join(DETECTOR_TYPES)} (Deepness's values), or leave it out and the output shapes decide."
    )


def _to_class_colors(value: Any) -> dict[int, str]:
    colors = _to_class_dict(value)
    return {k: v.lower() for k, v in colors.items()}
