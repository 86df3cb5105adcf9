"""A north-up raster grid: size, geotransform and CRS, independent of any raster library."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import GridError

__all__ = [
    "MAX_GRID_PIXELS",
    "RasterGrid",
]

# A pixel count above this is almost surely a unit mistake (degrees vs metres).
MAX_GRID_PIXELS = 2**36


@dataclass(frozen=True)
class RasterGrid:
    """Pixel grid of a raster: GDAL geotransform (x0, dx, 0, y0, 0, dy) with dy < 0."""

    width: int
    height: int
    geotransform: tuple[float, float, float, float, float, float]
    crs_wkt: str

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise GridError(f"The grid is empty ({self.width} x {self.height} pixels).")
        if self.width * self.height > MAX_GRID_PIXELS:
            raise GridError(
                f"The grid would have {self.width} x {self.height} pixels; check that the pixel "
                "size is given in the units of the CRS."
            )
        _, dx, rot_x, _, rot_y, dy = self.geotransform
        if rot_x != 0 or rot_y != 0:
            raise GridError(
                "The raster has a rotated geotransform, which is not supported; warp it to a "
                "north-up grid first (Raster > Projections > Warp)."
            )
        if dx <= 0 or dy >= 0:
            raise GridError(
                f"The raster grid is not north-up (pixel size {dx}, {dy}); warp it to a north-up grid first."
            )
        if not self.crs_wkt:
            raise GridError(
                "The grid has no coordinate reference system; assign one to the raster "
                "(Raster > Projections > Assign Projection) or choose a CRS."
            )

    @classmethod
    def from_extent(
        cls,
        xmin: float,
        ymin: float,
        xmax: float,
        ymax: float,
        pixel_size: float,
        crs_wkt: str,
    ) -> RasterGrid:
        """A grid anchored at the extent's top-left corner that covers the whole extent."""
        if pixel_size <= 0:
            raise GridError(f"The pixel size must be positive, got {pixel_size}.")
        if xmax <= xmin or ymax <= ymin:
            raise GridError("The extent is empty; choose an extent with a width and a height.")
        # Round near-whole counts (float noise) before taking the ceiling.
        width = math.ceil(round((xmax - xmin) / pixel_size, 6))
        height = math.ceil(round((ymax - ymin) / pixel_size, 6))
        return cls(width, height, (xmin, pixel_size, 0.0, ymax, 0.0, -pixel_size), crs_wkt)

    @property
    def pixel_width(self) -> float:
        return self.geotransform[1]

    @property
    def pixel_height(self) -> float:
        return -self.geotransform[5]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax)."""
        return self.window_bounds(0, 0, self.height, self.width)

    def window_bounds(self, row: int, col: int, rows: int, cols: int) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the pixel window (row, col, rows, cols) in map units.

        Every edge comes straight from the geotransform (GDAL: pixel corner (col, row) lies at
        x = x0 + col * dx, y = y0 + row * dy), so neighbouring windows share their edges exactly.
        The window may reach outside the grid; clipping is the caller's business.
        """
        x0, dx, _, y0, _, dy = self.geotransform
        return x0 + col * dx, y0 + (row + rows) * dy, x0 + (col + cols) * dx, y0 + row * dy

    def window_geotransform(
        self, col_off: int, row_off: int
    ) -> tuple[float, float, float, float, float, float]:
        """Geotransform of a window whose top-left pixel is (col_off, row_off)."""
        _, dx, _, _, _, dy = self.geotransform
        xmin, _, _, ymax = self.window_bounds(row_off, col_off, 0, 0)
        return (xmin, dx, 0.0, ymax, 0.0, dy)

    def window_grid(self, row: int, col: int, rows: int, cols: int) -> RasterGrid:
        """The grid of the pixel window (row, col, rows, cols): what a file cut from it holds."""
        return RasterGrid(cols, rows, self.window_geotransform(col, row), self.crs_wkt)
