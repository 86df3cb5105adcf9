"""THE nodata rule: which pixels of a raster carry no data, for every part of rsdl.

One band's pixel is nodata when
  - it equals the band's nodata value (a NaN nodata value matches NaN values),
  - it is not finite (NaN or an infinity in a float band), with or without a nodata value, or
  - it is zero in the band's mask (GDAL mask band: alpha band, internal mask), where one is read.

A pixel is nodata when ANY band that is read is nodata in it. The model cannot see a pixel with
a missing band, so that pixel stays nodata in every inference output and is ignored in training
(the ignore value in label masks, left out of the band statistics). Which bands count is the
caller's choice: the model's bands at inference and in training; every band of the image for
chip export (rsdl:exportchips) and of the REFERENCE raster of rsdl:rasterizelabels.

Inference (qgis_io/provider_reader.py, qgis_io/stripe_reader.py), chip export and label masks
(qgis_io/raster_nodata.py) and training (training/data/base.py) read values and masks with their
own library and decide here, from arrays only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["any_band_nodata", "band_nodata", "nodata_pixels", "valid_pixels", "zero_non_finite"]


def band_nodata(
    values: np.ndarray | None, nodata: float | None = None, mask: np.ndarray | None = None
) -> np.ndarray:
    """True where one band is nodata: ``values`` equal to ``nodata`` (None: no nodata value; NaN
    matches NaN) or not finite, or ``mask`` (the band's mask, same shape; None: none) is zero.

    ``values`` may be None when ``mask`` is given and already applies the nodata value (a GDAL
    mask band does); the non-finite test then needs the values of float bands all the same.
    """
    if values is None and mask is None:
        raise ValueError("band_nodata needs the band's values, its mask or both.")
    tests = []  # each a new array, so they combine in place
    if values is not None:
        floats = values.dtype.kind in "fc"
        if nodata is not None and np.isnan(nodata):
            if floats:  # NaN nodata: integers hold no NaN
                tests.append(np.isnan(values))
        elif nodata is not None:
            tests.append(values == nodata)
        if floats:
            tests.append(~np.isfinite(values))
    if mask is not None:
        tests.append(mask == 0)
    if not tests:
        return np.zeros(values.shape, dtype=bool)
    return _any_in_place(tests)


def any_band_nodata(bands_nodata: Iterable[np.ndarray]) -> np.ndarray:
    """The rule across bands: a pixel is nodata when it is nodata in any band read.

    ``bands_nodata`` holds one boolean array per band (``band_nodata``), all of one shape.
    """
    arrays = list(bands_nodata)
    if not arrays:
        raise ValueError("any_band_nodata needs at least one band.")
    return _any_in_place([arrays[0].copy(), *arrays[1:]])


def _any_in_place(arrays: list[np.ndarray]) -> np.ndarray:
    """OR of ``arrays`` into the first one, which the caller owns (no copy on the stripe path)."""
    combined = arrays[0]
    for missing in arrays[1:]:
        np.logical_or(combined, missing, out=combined)
    return combined


def nodata_pixels(
    bands: np.ndarray | Sequence[np.ndarray | None],
    nodata: Sequence[float | None],
    masks: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """(rows, cols): True where any of ``bands`` ((bands, rows, cols) or a list of (rows, cols)
    arrays, each in its own type) is nodata; ``nodata`` and ``masks`` (optional) go per band, as
    in ``band_nodata`` (a band's values may be None where its mask is given)."""
    if len(bands) != len(nodata) or (masks is not None and len(masks) != len(bands)):
        raise ValueError(f"{len(bands)} bands need as many nodata values and masks.")
    masks = masks if masks is not None else [None] * len(bands)
    # A band that cannot hold nodata (integers, no nodata value, no mask) adds nothing to the rule.
    tested = [
        band_nodata(values, value, mask)
        for values, value, mask in zip(bands, nodata, masks)
        if value is not None or mask is not None or values.dtype.kind in "fc"
    ]
    if not tested:
        return np.zeros(bands[0].shape, dtype=bool)
    return _any_in_place(tested)  # band_nodata's arrays are new: combine them in place


def valid_pixels(
    bands: np.ndarray | Sequence[np.ndarray],
    nodata: Sequence[float | None],
    masks: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """(rows, cols): True where every band read holds data (``~nodata_pixels``)."""
    missing = nodata_pixels(bands, nodata, masks)  # a new array: invert it in place
    return np.logical_not(missing, out=missing)


def zero_non_finite(data: np.ndarray) -> np.ndarray:
    """Set NaN and infinities to 0, in place (float data; integers pass unchanged).

    NaN nodata must not reach the model: a convolution would spread it over valid pixels
    (a nodata halo) and a classifier's pooling over the whole crop.
    """
    if data.dtype.kind == "f":
        np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return data
