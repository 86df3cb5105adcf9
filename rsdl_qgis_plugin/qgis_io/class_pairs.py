"""Count (reference, predicted) class pairs of two rasters on one grid, streaming row blocks.

Only a block of full-width rows of each raster is in memory at a time. A pixel is left out where
the reference holds its ignore value or is nodata, or where the prediction is nodata (GDAL mask
bands: nodata values, alpha bands and per-dataset masks alike).
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal
from qgis.core import QgsFeedback

from ..core.metrics.confusion import PairCounts
from .gdal_calls import check_gdal, raise_if_cancelled

BLOCK_PIXELS = 1 << 22  # about 4 million pixels of each raster per block


def _valid_rows(band: gdal.Band, row: int, rows: int) -> np.ndarray | None:
    """True where the band has data in these rows; None when every pixel of the band is valid."""
    if band.GetMaskFlags() == gdal.GMF_ALL_VALID:
        return None
    return band.GetMaskBand().ReadAsArray(0, row, band.XSize, rows) != 0


def _read_rows(band: gdal.Band, row: int, rows: int, name: str) -> np.ndarray:
    gdal.ErrorReset()
    block = band.ReadAsArray(0, row, band.XSize, rows)
    check_gdal(block is not None, f"Reading rows {row}-{row + rows} of '{name}'")
    return block


def count_class_pairs(
    prediction: gdal.Dataset,
    reference: gdal.Dataset,
    ignore_value: int | None,
    feedback: QgsFeedback | None = None,
) -> PairCounts:
    """Pixel counts per (reference value, predicted value) over the rasters' first bands."""
    predicted_band = prediction.GetRasterBand(1)
    reference_band = reference.GetRasterBand(1)
    width, height = prediction.RasterXSize, prediction.RasterYSize
    step = max(1, BLOCK_PIXELS // max(width, 1))
    counts = PairCounts()
    for row in range(0, height, step):
        raise_if_cancelled(feedback)
        rows = min(step, height - row)
        truth = _read_rows(reference_band, row, rows, reference.GetDescription())
        predicted = _read_rows(predicted_band, row, rows, prediction.GetDescription())
        valid = np.ones(truth.shape, dtype=bool) if ignore_value is None else truth != ignore_value
        for mask in (_valid_rows(reference_band, row, rows), _valid_rows(predicted_band, row, rows)):
            if mask is not None:
                valid &= mask
        counts.add_block(truth, predicted, valid)
        if feedback is not None:
            feedback.setProgress(100.0 * (row + rows) / height)
    return counts
