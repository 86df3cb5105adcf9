"""Write a GeoTIFF row by row as rows arrive, complete or absent.

Rows are buffered until a whole strip can be written, so each compressed strip reaches the disk
exactly once and in order (rewriting compressed blocks would grow the file), and leaves GDAL's
block cache once written, so memory does not grow with the raster. The file is written
under a temporary name and renamed when the writer closes without error (or, with an
``AtomicOutputs`` group, when the whole group commits).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array

from ..core.files.atomic_output import AtomicOutputs, atomic_file
from ..core.raster.grid import RasterGrid
from .gdal_calls import check_gdal, gdal_failure
from .raster_description import RasterDescription, apply_description

ROWS_PER_STRIP = 32


class GeoTiffRowWriter:
    """Context manager: ``with GeoTiffRowWriter(...) as writer: writer.write_rows(row, values)``."""

    def __init__(
        self,
        path: str | Path,
        grid: RasterGrid,
        bands: int,
        dtype: np.dtype,
        description: RasterDescription | None = None,
        outputs: AtomicOutputs | None = None,
    ) -> None:
        self.path = Path(path)
        self.outputs = outputs  # a group renames the file with the others; else it is renamed alone
        self.grid = grid
        self.bands = bands
        self.dtype = np.dtype(dtype)
        self.description = description or RasterDescription()
        self._stack = contextlib.ExitStack()
        self._dataset: gdal.Dataset | None = None
        self._temp: Path | None = None
        self._buffer = np.zeros((bands, ROWS_PER_STRIP, grid.width), dtype=self.dtype)
        self._buffer_first_row = 0
        self._buffered_rows = 0

    def __enter__(self) -> GeoTiffRowWriter:
        temp = self._stack.enter_context(atomic_file(self.path, outputs=self.outputs))
        self._temp = temp
        predictor = "3" if self.dtype.kind == "f" else "2"
        options = [
            "COMPRESS=DEFLATE",  # readable everywhere (ZSTD is faster but not in every reader)
            f"PREDICTOR={predictor}",
            # Level 1: about 3x faster than the default (6), for somewhat larger files; the
            # engine compresses on its main thread, between model batches.
            "ZLEVEL=1",
            "TILED=NO",
            f"BLOCKYSIZE={ROWS_PER_STRIP}",
            "BIGTIFF=IF_SAFER",
        ]
        gdal_type = gdal_array.NumericTypeCodeToGDALTypeCode(self.dtype)
        gdal.ErrorReset()
        dataset = gdal.GetDriverByName("GTiff").Create(
            str(temp), self.grid.width, self.grid.height, self.bands, gdal_type, options
        )
        check_gdal(dataset is not None, f"Creating '{self.path}'", path=self.path)
        dataset.SetGeoTransform(self.grid.geotransform)
        dataset.SetProjection(self.grid.crs_wkt)
        apply_description(dataset, self.description)
        self._dataset = dataset
        return self

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        """Write (bands, rows, width) values starting at ``first_row``; rows must come in order."""
        expected = self._buffer_first_row + self._buffered_rows
        if first_row != expected:
            raise ValueError(f"Rows must arrive in order: got row {first_row}, expected {expected}.")
        values = values.reshape(self.bands, -1, self.grid.width)
        offset = 0
        while offset < values.shape[1]:
            take = min(ROWS_PER_STRIP - self._buffered_rows, values.shape[1] - offset)
            self._buffer[:, self._buffered_rows : self._buffered_rows + take] = values[
                :, offset : offset + take
            ]
            self._buffered_rows += take
            offset += take
            if self._buffered_rows == ROWS_PER_STRIP:
                self._flush()

    def _flush(self) -> None:
        if not self._buffered_rows:
            return
        rows = self._buffer[:, : self._buffered_rows]
        for index in range(self.bands):
            band = self._dataset.GetRasterBand(index + 1)
            ok = band.WriteArray(rows[index], 0, self._buffer_first_row) == gdal.CE_None
            check_gdal(ok, f"Writing '{self.path}'", path=self.path)
        # Write the strip to the file now and drop it from GDAL's block cache. Left there, written
        # blocks stay until the cache is full or the file closes: under GDAL's default cache (5% of
        # RAM, as in QGIS) that is the whole output of a large raster, memory that grows with it.
        self._flush_cache()
        self._buffer_first_row += self._buffered_rows
        self._buffered_rows = 0

    def _flush_cache(self) -> None:
        """Write the cached blocks to the file (and out of the cache), or raise naming the file.

        GDAL 3.7+ returns the failure from FlushCache (3.10 leaves no last error behind for a
        write that fails there); older GDAL returns nothing and leaves the last error."""
        status = self._dataset.FlushCache()
        ok = status in (None, gdal.CE_None) and gdal.GetLastErrorType() < gdal.CE_Failure
        check_gdal(ok, f"Writing '{self.path}'", path=self.path)

    def _finish(self) -> None:
        self._flush()
        if self._buffer_first_row != self.grid.height:
            raise ValueError(f"'{self.path}' received {self._buffer_first_row} of {self.grid.height} rows.")
        self._flush_cache()
        # Closing writes the TIFF directory: on a full disk that fails too, after FlushCache.
        self._dataset = None
        check_gdal(gdal.GetLastErrorType() < gdal.CE_Failure, f"Writing '{self.path}'", path=self.path)
        self._check_strips_landed()

    def _check_strips_landed(self) -> None:
        """Every strip lies inside the file written. GDAL 3.10 with Debian's libtiff reports a failed
        write (a full disk, a file size limit) only on stderr: no GDAL error, no failed return, a
        file that opens. Its strips' offsets and sizes, which GDAL shows, tell it apart."""
        dataset = gdal.Open(str(self._temp))
        landed = dataset is not None
        if landed:
            size = self._temp.stat().st_size
            strips = -(-self.grid.height // ROWS_PER_STRIP)
            for band_index in range(1, dataset.RasterCount + 1):
                band = dataset.GetRasterBand(band_index)
                for strip in range(strips):
                    offset = band.GetMetadataItem(f"BLOCK_OFFSET_0_{strip}", "TIFF")
                    length = band.GetMetadataItem(f"BLOCK_SIZE_0_{strip}", "TIFF")
                    if not offset or not length or int(offset) + int(length) > size:
                        landed = False
                        break
        dataset = None
        if not landed:
            reason = "some strips never reached the file (a write failed)"
            raise gdal_failure(f"Writing '{self.path}'", reason, path=self.path)

    def __exit__(self, error_type, error, traceback) -> bool:
        if error_type is None:
            try:
                self._finish()
            except BaseException as failure:
                self._dataset = None
                self._stack.__exit__(type(failure), failure, failure.__traceback__)
                raise
        self._dataset = None  # closes the file before the rename
        return bool(self._stack.__exit__(error_type, error, traceback))
