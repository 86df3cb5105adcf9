"""The tile size and overlap a model runs at on a raster: one policy for every tool that tiles.

Tile size, first that applies:
1. a fixed square input size of the model (ONNX input shape): nothing else can run;
2. the size the user asked for;
3. the model's metadata (``tile_size``, Deepness's ``tiles_size``);
4. the default of the model's type (``core/contract/model_types.py``) as the tool runs it.
Overlap, in percent of the tile: the user's, else the metadata's ``tiles_overlap``, else
``DEFAULT_OVERLAP_PERCENT``; in pixels it is rounded and kept below the tile size.
"""

from __future__ import annotations

from ..contract.model_spec import ModelSpec, ModelType
from ..contract.model_types import role_of
from ..errors import ModelError

__all__ = [
    "DEFAULT_OVERLAP_PERCENT",
    "default_batch_size",
    "default_tile_size",
    "overlap_pixels",
    "tile_size",
]

DEFAULT_OVERLAP_PERCENT = 15.0


def default_tile_size(model_type: ModelType) -> int:
    """The tile side of a model type when neither the model nor the user says (Segmentor's for others)."""
    role = role_of(model_type) or role_of(ModelType.SEGMENTOR)
    return role.default_tile_size


def default_batch_size(model_type: ModelType) -> int:
    """Tiles or crops per model call for a model type (Segmentor's for others)."""
    role = role_of(model_type) or role_of(ModelType.SEGMENTOR)
    return role.default_batch_size


def tile_size(
    spec: ModelSpec,
    input_size: tuple[int | None, int | None],
    asked: int | None,
    run_as: ModelType | None = None,
    parameter: str = "TILE_SIZE",
    model_name: str = "model",
) -> int:
    """The tile side in pixels (see the module docstring).

    ``run_as``: the type the calling tool runs the model as, whose default applies (the spec's
    type when None; a classification tool runs an undeclared model as a Classifier).
    ``parameter`` names the user's setting in the refusals (TILE_SIZE in QGIS, --tile-size on the
    command line)."""
    height, width = input_size
    if height and width and height != width:
        raise ModelError(
            f"The model '{model_name}' takes non-square {height} x {width} inputs; only square tiles "
            "are supported. Export it with a square (or dynamic) input size."
        )
    fixed = height or width
    if fixed and asked and asked != fixed:
        raise ModelError(
            f"The model '{model_name}' takes {fixed} x {fixed} pixel inputs; {parameter} {asked} "
            f"cannot be used. Leave {parameter} empty."
        )
    return fixed or asked or spec.tile_size or default_tile_size(run_as or spec.model_type)


def overlap_pixels(spec: ModelSpec, tile: int, asked_percent: float | None) -> int:
    """The overlap of neighbouring tiles in pixels (see the module docstring)."""
    percent = asked_percent
    if percent is None:
        percent = spec.tiles_overlap_percent
    if percent is None:
        percent = DEFAULT_OVERLAP_PERCENT
    return min(tile - 1, round(tile * percent / 100.0))
