"""Burn prepared labels into a label-mask GeoTIFF, streaming block by block.

GDAL rasterizes into an uncompressed temporary GeoTIFF in chunks of rows (bounded by its block
cache, so a 20,000 x 20,000 grid never needs a full-size array). A second pass reads it row block
by row block, turns the reference raster's nodata into the ignore value, counts classes and writes
every block of the final, compressed and styled mask explicitly (``GeoTiffRowWriter``), which is
renamed into place when complete.

Never let GDAL copy the temporary file (``gdal.Translate``): from GDAL 3.10 a copy treats the
temporary file's never-written tiles as holes and fills them with the output's nodata, the ignore
value, so background silently became "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osgeo import gdal, gdal_array, ogr
from qgis.core import QgsFeedback

from ..core.files.atomic_output import AtomicOutputs, public_path, release_failed_frames, temporary_sibling
from ..core.labels.label_rules import LabelClass, MaskValues, smallest_unsigned_dtype
from ..core.metrics.class_statistics import ClassStatistics
from ..core.raster.grid import RasterGrid
from .gdal_calls import check_gdal, checked_read, no_gdal_failure, progress_callback, raise_if_cancelled
from .label_features import BURN_FIELD
from .raster_description import class_raster_description
from .raster_nodata import has_nodata, nodata_rows
from .raster_writer import GeoTiffRowWriter

ROWS_PER_PASS = 512


@dataclass(frozen=True)
class BurnOptions:
    all_touched: bool = False


def _burn(
    dataset: gdal.Dataset,
    labels: ogr.Layer,
    options: BurnOptions,
    feedback: QgsFeedback | None,
    name: str,
    path: Path,
) -> None:
    rasterize_options = [f"ATTRIBUTE={BURN_FIELD}"]
    if options.all_touched:
        rasterize_options.append("ALL_TOUCHED=TRUE")
    result = gdal.RasterizeLayer(
        dataset,
        [1],
        labels,
        options=rasterize_options,
        callback=progress_callback(feedback, 0.0, 70.0),
    )
    check_gdal(result == gdal.CE_None, f"Rasterizing the labels into {name}", feedback, path)


def _write_final_rows(
    dataset: gdal.Dataset,
    reference: gdal.Dataset | None,
    values: MaskValues,
    writer: GeoTiffRowWriter,
    feedback: QgsFeedback | None,
    name: str,
    path: Path,
) -> ClassStatistics:
    """Copy the burnt rows into ``writer`` with the reference's nodata as the ignore value, and
    count the classes of what is written."""
    band = dataset.GetRasterBand(1)
    statistics = ClassStatistics(values.ignore_value)
    use_reference = reference is not None and has_nodata(reference)
    height = dataset.RasterYSize
    for row in range(0, height, ROWS_PER_PASS):
        raise_if_cancelled(feedback)
        rows = min(ROWS_PER_PASS, height - row)
        block = checked_read(
            f"Reading back {name}", band.ReadAsArray, 0, row, dataset.RasterXSize, rows, feedback=feedback
        )
        if use_reference:
            block[nodata_rows(reference, row, rows)] = values.ignore_value
        statistics.add_block(block)
        writer.write_rows(row, block)
        if feedback is not None:
            feedback.setProgress(70.0 + 30.0 * (row + rows) / height)
    return statistics


def write_label_mask(
    labels: ogr.Layer,
    classes: list[LabelClass],
    grid: RasterGrid,
    values: MaskValues,
    options: BurnOptions,
    output_path: str | Path,
    reference: gdal.Dataset | None = None,
    feedback: QgsFeedback | None = None,
    outputs: AtomicOutputs | None = None,
) -> ClassStatistics:
    """Write the label mask GeoTIFF at ``output_path``; returns per-class pixel counts.

    With ``outputs`` the mask is renamed into place when that group commits."""
    dtype = smallest_unsigned_dtype(
        [c.value for c in classes] + [values.background_value, values.ignore_value]
    )
    raw_path = temporary_sibling(Path(output_path))
    name = f"the mask '{public_path(output_path)}'"
    description = class_raster_description(classes, values)
    raw = None
    gdal.ErrorReset()
    try:
        with GeoTiffRowWriter(output_path, grid, 1, dtype, description, outputs) as writer:
            raw = gdal.GetDriverByName("GTiff").Create(
                str(raw_path),
                grid.width,
                grid.height,
                1,
                gdal_array.NumericTypeCodeToGDALTypeCode(dtype),
                ["TILED=YES", "BIGTIFF=IF_SAFER", "SPARSE_OK=FALSE"],
            )
            check_gdal(raw is not None, f"Creating {name}", feedback, raw_path)
            raw.SetGeoTransform(grid.geotransform)
            raw.SetProjection(grid.crs_wkt)
            # Every pixel starts as the unlabelled value. GDAL may still leave a filled tile
            # unwritten (it skips tiles equal to nodata, or 0, until the file closes): nodata is
            # that same value, so such a tile reads as it on every GDAL version.
            burn_band = raw.GetRasterBand(1)
            burn_band.SetNoDataValue(values.unlabelled_value)
            check_gdal(
                burn_band.Fill(values.unlabelled_value) == gdal.CE_None,
                f"Initialising {name}",
                feedback,
                raw_path,
            )
            _burn(raw, labels, options, feedback, name, raw_path)
            # Write the burn file out before reading it back, so a failed write (a full disk)
            # fails here on every GDAL, not only when blocks leave the cache (or never).
            raw.FlushCache()
            check_gdal(no_gdal_failure(), f"Writing {name}", feedback, raw_path)
            statistics = _write_final_rows(raw, reference, values, writer, feedback, name, raw_path)
            check_gdal(no_gdal_failure(), f"Writing {name}", feedback, raw_path)
    except BaseException as error:
        # A failed step may still hold the raw file open; closing it later would write its
        # .aux.xml again after we removed it.
        release_failed_frames(error)
        raise
    finally:
        burn_band = raw = None
        for path in (raw_path, Path(f"{raw_path}.aux.xml")):
            path.unlink(missing_ok=True)
    return statistics
