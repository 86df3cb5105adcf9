"""Read windows of a raster file straight from GDAL, one stripe of tile rows at a time.

The provider reader makes one provider call per band per tile and converts every tile to
float32 on the reading thread, which competes with the model for the CPUs. For a raster file
that the grid covers at its own pixels, the same pixels come from one GDAL read per tile row
(all bands at once, in the raster's own type, e.g. uint8); tiles are views into that stripe and
the engine converts them to float32 once per batch. Both readers apply the nodata rule of
core/raster/nodata.py to the same values, so they give the same tiles.

Everything else stays on the provider path (``stripe_reader_factory`` returns None): web maps
and other providers, resampled grids, bands QGIS scales or whose type it changes, user nodata
values, and GDAL mask bands that QGIS exposes as an extra alpha band.

Memory does not grow with the raster's height, whatever GDAL's block cache size (5% of RAM by
default in QGIS). GDAL keeps every block it decodes until its cache is full, so the reader keeps
the rows the next stripe needs itself and drops GDAL's blocks after each read. Reads end on the
file's block-row boundaries, so each block is still decoded once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal, gdal_array
from qgis.core import QgsRasterLayer

from ..core.errors import RsdlError
from ..core.raster.grid import RasterGrid
from ..core.raster.nodata import valid_pixels, zero_non_finite
from .gdal_calls import checked_read, gdal_errors
from .provider_reader import NUMPY_TYPES, alpha_band

_ALIGNMENT_TOLERANCE = 1e-6  # pixels: a grid offset this close to whole pixels is aligned
# Blocks up to this many rows (tiles, strips) are read to their end and dropped from GDAL's cache
# after each read. A taller block (a whole-image strip) stays with GDAL's cache: reading it to its
# end would hold it all, and dropping it would decode it again for every stripe.
MAX_RELEASED_BLOCK_ROWS = 1024


class GdalStripeReader:
    """Reads (bands, rows, cols) windows of ``grid`` plus a valid-pixel mask, through GDAL.

    Windows of the same rows (one tile row) are cut from one stripe read of the grid's whole
    width; memory is a stripe of ``rows`` x grid width x bands, never the raster height.
    """

    def __init__(
        self,
        path: str,
        offset: tuple[int, int],
        size: tuple[int, int],
        bands: tuple[int, ...],
        nodata: dict[int, float | None],
        alpha: int | None,
    ) -> None:
        self.path = path
        with gdal_errors(f"Opening raster '{path}' again"):
            self.dataset = gdal.Open(path, gdal.GA_ReadOnly)  # opened on the reading thread
        if self.dataset is None:
            raise RsdlError(f"GDAL cannot open raster '{path}' any more; is the file still there?")
        self.col_offset, self.row_offset = offset
        self.width, self.height = size
        self.bands = bands
        self.nodata = nodata  # per band read, as the provider sees it (None: no nodata)
        self.alpha = alpha
        self.band_list = [*bands, *([alpha] if alpha is not None else [])]
        self.block_rows = self.dataset.GetRasterBand(self.band_list[0]).GetBlockSize()[1]
        self._stripe_rows: tuple[int, int] | None = None
        self._data = np.empty((0, 0, 0))
        self._valid = np.empty((0, 0), dtype=bool)
        # Raw rows read ahead (up to a block boundary) or kept from the last stripe: grid rows
        # from _rows_start on, every band read.
        self._rows_start = 0
        self._rows = np.empty((len(self.band_list), 0, self.width))

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A window of the grid: views into the stripe of rows ``row`` .. ``row + rows``."""
        if self._stripe_rows != (row, rows):
            self._read_stripe(row, rows)
        return self._data[:, :, col : col + cols], self._valid[:, col : col + cols]

    def _raw_rows(self, row: int, rows: int) -> np.ndarray:
        """(bands read, rows, width) raw values of grid rows ``row`` .. ``row + rows``."""
        end = row + rows
        kept_end = self._rows_start + self._rows.shape[1]
        if not (self._rows_start <= row <= kept_end):  # not in order: nothing kept helps
            self._rows_start, self._rows, kept_end = row, self._rows[:, :0], row
        if end > kept_end:
            release = self.block_rows <= MAX_RELEASED_BLOCK_ROWS
            read_end = end
            if release:  # on to the file's next block boundary: each block is decoded once
                file_end = self.row_offset + end
                read_end = min(
                    -(-file_end // self.block_rows) * self.block_rows - self.row_offset, self.height
                )
            values = checked_read(
                f"Reading rows {kept_end + 1}-{read_end} of raster '{self.path}'",
                self.dataset.ReadAsArray,
                self.col_offset,
                self.row_offset + kept_end,
                self.width,
                read_end - kept_end,
                band_list=self.band_list,
            )
            if release:
                self.dataset.FlushCache()  # drops GDAL's copies of the blocks just decoded
            values = values.reshape(len(self.band_list), read_end - kept_end, self.width)
            kept = self._rows[:, row - self._rows_start :]
            self._rows = np.concatenate([kept, values], axis=1) if kept.shape[1] else values
            self._rows_start = row
        return self._rows[:, row - self._rows_start : end - self._rows_start]

    def _read_stripe(self, row: int, rows: int) -> None:
        values = self._raw_rows(row, rows)
        data = values[: len(self.bands)]
        # The alpha band is every band's mask, as in the provider reader; the rule ORs the bands,
        # so giving it to the first one is enough.
        masks = None if self.alpha is None else [values[-1], *[None] * (len(self.bands) - 1)]
        valid = valid_pixels(data, [self.nodata[band] for band in self.bands], masks)
        if data.dtype.kind == "f":  # as the provider reader: float32 first, then non-finite to 0
            data = zero_non_finite(data.astype(np.float32))
        self._stripe_rows, self._data, self._valid = (row, rows), data, valid


def stripe_reader_factory(
    layer: QgsRasterLayer, grid: RasterGrid, bands: tuple[int, ...]
) -> Callable[[], GdalStripeReader] | None:
    """A factory of stripe readers when ``grid`` is a window of ``layer``'s own file pixels and
    GDAL gives exactly what the provider would; else None (use the provider reader)."""
    provider = layer.dataProvider()
    path = layer.source()
    if layer.providerType() != "gdal" or not Path(path).is_file():
        return None
    dataset = gdal.Open(path, gdal.GA_ReadOnly)
    if (
        dataset is None
        or dataset.RasterCount != provider.bandCount()  # QGIS shows a mask band as alpha
        or (dataset.RasterXSize, dataset.RasterYSize) != (provider.xSize(), provider.ySize())
    ):
        return None
    offset = _grid_offset(dataset, grid)
    alpha = alpha_band(provider)
    read = [*bands, *([alpha] if alpha is not None else [])]
    # One read gives all bands one type: bands of different types stay on the provider path.
    types = {dataset.GetRasterBand(band).DataType for band in read}
    if offset is None or len(types) != 1 or not all(_same_as_provider(dataset, layer, band) for band in read):
        return None
    nodata = {
        band: provider.sourceNoDataValue(band)
        if provider.sourceHasNoDataValue(band) and provider.useSourceNoDataValue(band)
        else None
        for band in bands
    }
    return lambda: GdalStripeReader(path, offset, (grid.width, grid.height), bands, nodata, alpha)


def _grid_offset(dataset: gdal.Dataset, grid: RasterGrid) -> tuple[int, int] | None:
    """(col, row) of the grid's first pixel in the raster, when the grid is a window of the
    raster's own pixels (same pixel size, whole-pixel offset, inside the raster); else None."""
    x0, dx, rot_x, y0, rot_y, dy = dataset.GetGeoTransform()
    grid_x0, grid_dx, _, grid_y0, _, grid_dy = grid.geotransform  # a grid is never rotated
    if (grid_dx, grid_dy) != (dx, dy) or rot_x or rot_y:
        return None
    col, row = (grid_x0 - x0) / dx, (grid_y0 - y0) / dy
    if max(abs(col - round(col)), abs(row - round(row))) > _ALIGNMENT_TOLERANCE:
        return None
    col, row = round(col), round(row)
    inside = col >= 0 and row >= 0 and col + grid.width <= dataset.RasterXSize
    return (col, row) if inside and row + grid.height <= dataset.RasterYSize else None


def _same_as_provider(dataset: gdal.Dataset, layer: QgsRasterLayer, band: int) -> bool:
    """Whether GDAL's values of ``band`` are what the provider gives: same type, not scaled,
    no user nodata."""
    provider = layer.dataProvider()
    source = dataset.GetRasterBand(band)
    numpy_type = NUMPY_TYPES.get(provider.dataType(band))
    gdal_type = gdal_array.GDALTypeCodeToNumericTypeCode(source.DataType)
    return (
        numpy_type is not None
        and gdal_type is not None
        and np.dtype(gdal_type) == np.dtype(numpy_type)
        and source.GetScale() in (None, 1.0)
        and source.GetOffset() in (None, 0.0)
        and not provider.userNoDataValues(band)
    )
