"""Read windows of a processing grid through a QGIS raster data provider.

Going through the provider (not GDAL directly) lets every layer QGIS can show be processed:
files, VRTs, WMS/XYZ basemaps. The provider resamples when the processing grid differs from
the raster's own. Providers are not thread-safe: each reader owns a clone used on one thread.
Raster files at their own pixels have a faster path with the same result (stripe_reader.py);
both apply the nodata rule of core/raster/nodata.py to the model's bands and the alpha band.

Tiled web maps (XYZ, WMTS) are read finer than the grid and reduced here. QGIS draws each tile
into the requested image, and from QGIS 3.44 (qgis/QGIS#61591, against hairline gaps between
tiles) it snaps every tile's destination rectangle outwards to whole pixels of that image: a
tile lands up to a pixel off and stretched by up to two. At the grid's own pixels that is up to
a grid pixel of misplaced imagery (0.5 m for a 50 cm model over 7.5 cm tiles), which changed a
model's output on one pixel in seven. Read at about the tiles' own pixel size, the same snapping
moves imagery by at most one tile pixel, which each grid pixel then samples at its centre, as
GDAL's nearest-neighbour reading of a file does.
"""

from __future__ import annotations

import numpy as np
from qgis.core import QgsRasterDataProvider, QgsRectangle

from ..core.errors import RsdlError
from ..core.raster.grid import RasterGrid
from ..core.raster.nodata import valid_pixels, zero_non_finite
from .compat import (
    ALPHA_BAND,
    DATA_TYPE_ARGB32,
    DATA_TYPE_ARGB32_PREMULTIPLIED,
    DATA_TYPE_BYTE,
    DATA_TYPE_FLOAT32,
    DATA_TYPE_FLOAT64,
    DATA_TYPE_INT16,
    DATA_TYPE_INT32,
    DATA_TYPE_UINT16,
    DATA_TYPE_UINT32,
    RASTER_CAPABILITY_SIZE,
)

NUMPY_TYPES = {
    DATA_TYPE_BYTE: np.uint8,
    DATA_TYPE_UINT16: np.uint16,
    DATA_TYPE_INT16: np.int16,
    DATA_TYPE_UINT32: np.uint32,
    DATA_TYPE_INT32: np.int32,
    DATA_TYPE_FLOAT32: np.float32,
    DATA_TYPE_FLOAT64: np.float64,
}
_ARGB_TYPES = (DATA_TYPE_ARGB32, DATA_TYPE_ARGB32_PREMULTIPLIED)
_ARGB_SHIFTS = {1: 16, 2: 8, 3: 0}  # red, green, blue in an ARGB pixel

MAX_SUPERSAMPLING = 16  # read a tiled web map at most this many times finer than the grid
MAX_BLOCK_PIXELS = 1 << 22  # a finer read is split into strips of at most this many pixels


def provider_band_count(provider: QgsRasterDataProvider) -> int:
    """Bands as a model sees them: an ARGB (WMS/XYZ) layer counts as red, green, blue."""
    if provider.bandCount() == 1 and provider.dataType(1) in _ARGB_TYPES:
        return 3
    return provider.bandCount()


def provider_dtype_name(provider: QgsRasterDataProvider) -> str:
    """numpy name of the first band's type ("uint8" for ARGB web maps)."""
    data_type = provider.dataType(1)
    if data_type in _ARGB_TYPES:
        return "uint8"
    return np.dtype(NUMPY_TYPES.get(data_type, np.float64)).name


def alpha_band(provider: QgsRasterDataProvider) -> int | None:
    """The 1-based alpha band, if the raster has one (its zeros mark nodata)."""
    for band in range(1, provider.bandCount() + 1):
        if provider.colorInterpretation(band) == ALPHA_BAND:
            return band
    return None


class ProviderWindowReader:
    """Reads (bands, rows, cols) float32 windows of ``grid`` plus a valid-pixel mask.

    ``grid`` may be None for a reader that only reads arbitrary extents (``read_extent``).
    """

    def __init__(
        self, provider: QgsRasterDataProvider, grid: RasterGrid | None, bands: tuple[int, ...]
    ) -> None:
        self.provider = provider
        self.grid = grid
        self.bands = bands
        self.argb = provider.bandCount() == 1 and provider.dataType(1) in _ARGB_TYPES
        self.alpha = None if self.argb else alpha_band(provider)
        # The pixel sizes of a tiled web map's zoom levels (a layer without a grid of its own).
        tiled = self.argb and not provider.capabilities() & RASTER_CAPABILITY_SIZE
        self.tile_resolutions = sorted(provider.nativeResolutions()) if tiled else []

    def _extent(self, row: int, col: int, rows: int, cols: int) -> QgsRectangle:
        return QgsRectangle(*self.grid.window_bounds(row, col, rows, cols))

    def _band(self, band: int, extent: QgsRectangle, rows: int, cols: int) -> tuple[np.ndarray, float | None]:
        """The band's values in its own type and its nodata value (None: none)."""
        block = self.provider.block(band, extent, cols, rows)
        if not block.isValid():
            raise RsdlError(
                f"Reading band {band} of raster '{self.provider.dataSourceUri()}' failed. The file may "
                "be truncated or corrupt: check it (gdalinfo -checksum) or copy or export it again."
            )
        data_type = block.dataType()
        if data_type not in NUMPY_TYPES:
            raise RsdlError(f"Raster band {band} has an unsupported data type ({data_type}).")
        values = np.frombuffer(bytes(block.data()), dtype=NUMPY_TYPES[data_type]).reshape(rows, cols)
        return values, block.noDataValue() if block.hasNoDataValue() else None

    def supersampling(self, extent: QgsRectangle, rows: int, cols: int) -> int:
        """How many times finer than ``cols`` x ``rows`` a tiled web map is read (1: not tiled).

        The factor brings the read pixels to about the size of the tiles QGIS draws for this
        request (the zoom level nearest the grid's pixel size, as the provider picks it), so that
        a coarser-than-tiles grid does not make the provider fetch finer zoom levels.
        """
        if not self.tile_resolutions:
            return 1
        size = max(extent.width() / cols, extent.height() / rows)
        tiles = min(self.tile_resolutions, key=lambda resolution: abs(resolution - size))
        return max(1, min(MAX_SUPERSAMPLING, round(size / tiles)))

    def _argb_block(self, extent: QgsRectangle, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        block = self.provider.block(1, extent, cols, rows)
        pixels = np.frombuffer(bytes(block.data()), dtype=np.uint32).reshape(rows, cols)
        channels = np.stack([(pixels >> _ARGB_SHIFTS[band]) & 0xFF for band in self.bands])
        return channels.astype(np.float32), ((pixels >> 24) & 0xFF) > 0

    def _argb(self, extent: QgsRectangle, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        factor = self.supersampling(extent, rows, cols)
        if factor == 1:
            return self._argb_block(extent, rows, cols)
        # Each grid pixel takes the read pixel at its centre (for an even factor, the one just
        # below and right of it), read in strips of grid rows to bound the memory.
        centre = factor // 2
        data = np.empty((len(self.bands), rows, cols), dtype=np.float32)
        valid = np.empty((rows, cols), dtype=bool)
        step = max(1, MAX_BLOCK_PIXELS // (cols * factor * factor))
        pixel_height = extent.height() / rows
        for top in range(0, rows, step):
            count = min(step, rows - top)
            strip = QgsRectangle(
                extent.xMinimum(),
                extent.yMaximum() - (top + count) * pixel_height,
                extent.xMaximum(),
                extent.yMaximum() - top * pixel_height,
            )
            fine, fine_valid = self._argb_block(strip, count * factor, cols * factor)
            data[:, top : top + count] = fine[:, centre::factor, centre::factor]
            valid[top : top + count] = fine_valid[centre::factor, centre::factor]
        return data, valid

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A window of the grid; a resampled grid's last pixels may lie past the raster's edge."""
        return self.read_extent(self._extent(row, col, rows, cols), cols, rows)

    def read_extent(self, extent: QgsRectangle, cols: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Any ``extent`` (layer CRS) resampled by the provider to ``cols`` x ``rows`` pixels.

        Pixels whose centre lies outside the layer are nodata and read as 0 (providers leave
        them undefined); so are non-finite values (NaN nodata). Data is always finite.
        """
        data, valid = self._read(extent, rows, cols)
        inside = self._inside_layer(extent, rows, cols)
        data[:, ~inside] = 0.0
        return data, valid & inside

    def _inside_layer(self, extent: QgsRectangle, rows: int, cols: int) -> np.ndarray:
        layer = self.provider.extent()
        x = extent.xMinimum() + (np.arange(cols) + 0.5) * (extent.width() / cols)
        y = extent.yMaximum() - (np.arange(rows) + 0.5) * (extent.height() / rows)
        inside_x = (x >= layer.xMinimum()) & (x <= layer.xMaximum())
        inside_y = (y >= layer.yMinimum()) & (y <= layer.yMaximum())
        return inside_y[:, None] & inside_x[None, :]

    def _read(self, extent: QgsRectangle, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        if self.argb:
            return self._argb(extent, rows, cols)
        data = np.empty((len(self.bands), rows, cols), dtype=np.float32)
        bands, nodata = [], []
        for index, band in enumerate(self.bands):
            values, value = self._band(band, extent, rows, cols)
            data[index] = values
            bands.append(values)
            nodata.append(value)
        # The alpha band is every band's mask (QGIS shows a GDAL mask band as one too); the rule
        # ORs the bands, so giving it to the first one is enough.
        alpha = None if self.alpha is None else self._band(self.alpha, extent, rows, cols)[0]
        valid = valid_pixels(bands, nodata, None if alpha is None else [alpha, *[None] * (len(bands) - 1)])
        return zero_non_finite(data), valid
