"""GDAL side of chip export: read chip-high strips of image and mask, write chip GeoTIFFs.

Only one strip (chip size x raster width x bands) is in memory at a time; chips are views
into it. Chip files keep the source's data type, bands, nodata, colour interpretation and CRS
(image) or the mask's data type, colour table and metadata (rsdl class names) with the ignore
value as nodata (mask); the geotransform is the source's shifted by the chip offset. Everything
is stored inside the TIFF (band category names would need an .aux.xml per chip, so they are
left to the metadata and dataset.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal
from qgis.core import QgsFeedback

from ..core.datasets.chips import ChipWindow
from ..core.raster.grid import RasterGrid
from .gdal_calls import check_gdal, checked_read, gdal_errors, no_gdal_failure
from .raster_nodata import has_nodata, nodata_rows

CHIP_CREATION_OPTIONS = ["COMPRESS=DEFLATE"]


@dataclass(frozen=True)
class Strip:
    """Full-width rows ``row .. row + height`` of the image and the mask."""

    row: int
    image: np.ndarray  # (bands, rows, width)
    nodata: np.ndarray | None  # (rows, width), True where any image band is nodata; None: none
    mask: np.ndarray  # (rows, width)

    def image_chip(self, window: ChipWindow) -> np.ndarray:
        return self.image[:, :, window.col : window.col + window.size]

    def image_all_nodata(self, window: ChipWindow) -> bool:
        return self.nodata is not None and bool(self.nodata[:, window.col : window.col + window.size].all())

    def mask_chip(self, window: ChipWindow, ignore_value: int) -> np.ndarray:
        """The mask chip (a copy), with the ignore value wherever the image is nodata."""
        chip = self.mask[:, window.col : window.col + window.size].copy()
        if self.nodata is not None:
            chip[self.nodata[:, window.col : window.col + window.size]] = ignore_value
        return chip


class StripReader:
    """Reads strips of ``rows`` full-width rows of an image and its label mask (same grid)."""

    def __init__(self, image: gdal.Dataset, mask: gdal.Dataset, rows: int) -> None:
        self.image = image
        self.mask_name = mask.GetDescription()
        self.mask_band = mask.GetRasterBand(1)
        self.rows = rows
        self.image_has_nodata = has_nodata(image)

    def read(self, row: int, feedback: QgsFeedback | None = None) -> Strip:
        width = self.image.RasterXSize
        rows = f"rows {row}-{row + self.rows}"
        image = checked_read(
            f"Reading {rows} of image '{self.image.GetDescription()}'",
            self.image.ReadAsArray,
            0,
            row,
            width,
            self.rows,
            feedback=feedback,
        )
        nodata = nodata_rows(self.image, row, self.rows, image) if self.image_has_nodata else None
        mask = checked_read(
            f"Reading {rows} of label mask '{self.mask_name}'",
            self.mask_band.ReadAsArray,
            0,
            row,
            width,
            self.rows,
            feedback=feedback,
        )
        if nodata is not None and not nodata.any():
            nodata = None
        return Strip(row, image.reshape(self.image.RasterCount, self.rows, width), nodata, mask)


@dataclass(frozen=True)
class _BandStyle:
    """What each written band copies from its source band."""

    nodata: float | None
    color_interpretation: int
    color_table: gdal.ColorTable | None = None


def _band_style(band: gdal.Band, nodata: float | None, with_color_table: bool) -> _BandStyle:
    table = band.GetColorTable() if with_color_table else None
    return _BandStyle(
        nodata=nodata,
        color_interpretation=band.GetColorInterpretation(),
        color_table=table.Clone() if table is not None else None,
    )


class ChipFileWriter:
    """Writes image and mask chips of one source pair as GeoTIFFs."""

    def __init__(self, image: gdal.Dataset, mask: gdal.Dataset, grid: RasterGrid, ignore_value: int) -> None:
        self.grid = grid
        self.projection = image.GetProjectionRef() or grid.crs_wkt
        self.image_type = image.GetRasterBand(1).DataType
        self.image_styles = [
            _band_style(band, band.GetNoDataValue(), with_color_table=False)
            for band in (image.GetRasterBand(i) for i in range(1, image.RasterCount + 1))
        ]
        mask_band = mask.GetRasterBand(1)
        self.mask_type = mask_band.DataType
        self.mask_styles = [_band_style(mask_band, float(ignore_value), with_color_table=True)]
        self.mask_metadata = mask.GetMetadata() or {}

    def write_image(self, root: Path, relative_path: str, window: ChipWindow, chip: np.ndarray) -> None:
        self._write(root / relative_path, window, chip, self.image_type, self.image_styles, {})

    def write_mask(self, root: Path, relative_path: str, window: ChipWindow, chip: np.ndarray) -> None:
        self._write(
            root / relative_path,
            window,
            chip[np.newaxis],
            self.mask_type,
            self.mask_styles,
            self.mask_metadata,
        )

    def _write(
        self,
        path: Path,
        window: ChipWindow,
        bands: np.ndarray,
        data_type: int,
        styles: list[_BandStyle],
        metadata: dict[str, str],
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        action = f"Writing chip '{path}'"  # an error names where the chip will be, not our temporary
        gdal.ErrorReset()
        with gdal_errors(action, path=path):
            dataset = gdal.GetDriverByName("GTiff").Create(
                str(path), window.size, window.size, len(styles), data_type, CHIP_CREATION_OPTIONS
            )
            check_gdal(dataset is not None, action, path=path)
            dataset.SetGeoTransform(self.grid.window_geotransform(window.col, window.row))
            dataset.SetProjection(self.projection)
            if metadata:
                dataset.SetMetadata(metadata)
            for index, style in enumerate(styles):
                band = dataset.GetRasterBand(index + 1)
                if style.nodata is not None:
                    band.SetNoDataValue(style.nodata)
                band.SetColorInterpretation(style.color_interpretation)
                if style.color_table is not None:
                    band.SetColorTable(style.color_table)
                check_gdal(band.WriteArray(bands[index]) == gdal.CE_None, action, path=path)
            band = None
            dataset.FlushCache()
            dataset = None  # closing writes the TIFF directory, which fails on a full disk too
            check_gdal(no_gdal_failure(), action, path=path)
