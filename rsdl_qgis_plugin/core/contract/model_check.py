"""Can this raster feed this model? Checked before any pixel is read, with messages that say why not."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import ModelSpecError
from .model_spec import DEFAULT_MAX_PIXEL_VALUE, ModelSpec

__all__ = [
    "RasterCompatibility",
    "check_raster_compatibility",
]

_EIGHT_BIT_TYPES = frozenset({"byte", "uint8", "int8"})


class RasterCompatibility(NamedTuple):
    """The 1-based raster bands to read, in model channel order, and non-fatal warnings."""

    bands: tuple[int, ...]
    warnings: tuple[str, ...]


def check_raster_compatibility(
    spec: ModelSpec,
    input_channels: int,
    raster_band_count: int,
    raster_dtype: str,
    crs_is_geographic: bool,
    band_mapping: tuple[int, ...] | None = None,
) -> RasterCompatibility:
    """The bands to feed the model, or a ModelSpecError naming the mismatch.

    Bands come from ``band_mapping`` (the user's choice, which may repeat a band), else the
    spec's ``bands``, else the first ``input_channels`` bands (so RGBA feeds an RGB model, as in
    Deepness). ``raster_dtype`` is a GDAL or numpy type name; a raster whose bit depth does not
    match ``max_pixel_value`` only gives a warning, because the model may still be right.
    """
    if band_mapping:
        bands, source = tuple(band_mapping), "The band mapping"
    elif spec.bands is not None:
        bands, source = spec.bands, "The model's spec ('bands')"
    else:
        if raster_band_count < input_channels:
            raise ModelSpecError(
                f"The model needs {input_channels} input bands but the raster has "
                f"{raster_band_count}. Choose a raster with at least {input_channels} bands, or give "
                "a band mapping (a band may be repeated)."
            )
        bands, source = tuple(range(1, input_channels + 1)), ""
    if len(bands) != input_channels:
        raise ModelSpecError(
            f"{source} lists {len(bands)} bands {list(bands)}, but the model takes {input_channels} "
            f"input channels. Give exactly {input_channels} band numbers."
        )
    missing = [band for band in bands if not 1 <= band <= raster_band_count]
    if missing:
        raise ModelSpecError(
            f"{source} names band(s) {missing}, but the raster has bands 1 to {raster_band_count}. "
            "Choose another raster or another band mapping."
        )
    if crs_is_geographic and spec.resolution_cm is not None:
        raise ModelSpecError(
            f"The raster's CRS is geographic (degrees), but the model was trained at "
            f"{spec.resolution_cm:g} cm per pixel. Reproject the raster to a projected (metric) CRS "
            "first, e.g. with GDAL's 'Warp (reproject)'."
        )

    warnings = []
    eight_bit = raster_dtype.strip().lower() in _EIGHT_BIT_TYPES
    if not eight_bit and spec.max_pixel_value == DEFAULT_MAX_PIXEL_VALUE:
        warnings.append(
            f"The raster's data type is {raster_dtype}, but the model scales pixels by 255 "
            "(max_pixel_value): values above 255 reach the model far outside the range it was "
            "trained on. Convert the raster to 8 bits, or use a model made for this data type."
        )
    elif eight_bit and spec.max_pixel_value > 255:
        warnings.append(
            f"The raster is 8-bit, but the model scales pixels by {spec.max_pixel_value:g} "
            "(max_pixel_value): it expects higher bit-depth imagery and will see very dark input."
        )
    return RasterCompatibility(bands, tuple(warnings))
