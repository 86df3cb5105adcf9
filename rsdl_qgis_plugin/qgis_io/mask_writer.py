"""Burn prepared labels into a label-mask GeoTIFF, streaming block by block.

GDAL rasterizes into an uncompressed temporary GeoTIFF in chunks of rows (bounded by its block
cache, so a 20,000 x 20,000 grid never needs a full-size array). A second pass over row blocks
turns the reference raster's nodata into the ignore value and counts classes. A final copy
compresses it and adds the colour table, class names and nodata value; only then is the file
renamed into place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osgeo import gdal, gdal_array, ogr
from qgis.core import QgsFeedback

from ..core.atomic_output import (
    AtomicOutputs,
    atomic_file,
    public_path,
    release_failed_frames,
    temporary_sibling,
)
from ..core.class_statistics import ClassStatistics
from ..core.grid import RasterGrid
from ..core.label_rules import LabelClass, MaskValues, smallest_unsigned_dtype
from .gdal_calls import check_gdal, progress_callback, raise_if_cancelled
from .label_features import BURN_FIELD
from .raster_description import apply_description, class_raster_description
from .raster_nodata import has_nodata, nodata_mask_rows

ROWS_PER_PASS = 512
OUTPUT_CREATION_OPTIONS = ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"]


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


def _apply_ignore_and_count(
    dataset: gdal.Dataset,
    reference: gdal.Dataset | None,
    values: MaskValues,
    feedback: QgsFeedback | None,
    name: str,
    path: Path,
) -> ClassStatistics:
    band = dataset.GetRasterBand(1)
    statistics = ClassStatistics(values.ignore_value)
    use_reference = reference is not None and has_nodata(reference)
    height = dataset.RasterYSize
    for row in range(0, height, ROWS_PER_PASS):
        raise_if_cancelled(feedback)
        rows = min(ROWS_PER_PASS, height - row)
        block = band.ReadAsArray(0, row, dataset.RasterXSize, rows)
        if use_reference:
            nodata = nodata_mask_rows(reference, row, rows)
            if nodata.any():
                block[nodata] = values.ignore_value
                check_gdal(band.WriteArray(block, 0, row) == gdal.CE_None, f"Writing {name}", feedback, path)
        statistics.add_block(block)
        if feedback is not None:
            feedback.setProgress(70.0 + 20.0 * (row + rows) / height)
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
    gdal_type = gdal_array.NumericTypeCodeToGDALTypeCode(dtype)
    with atomic_file(output_path, outputs=outputs) as final_temp:
        raw_path = temporary_sibling(Path(output_path))
        name = f"the mask '{public_path(output_path)}'"
        driver = gdal.GetDriverByName("GTiff")
        gdal.ErrorReset()
        try:
            raw = driver.Create(
                str(raw_path),
                grid.width,
                grid.height,
                1,
                gdal_type,
                ["TILED=YES", "BIGTIFF=IF_SAFER"],
            )
            check_gdal(raw is not None, f"Creating {name}", feedback, raw_path)
            raw.SetGeoTransform(grid.geotransform)
            raw.SetProjection(grid.crs_wkt)
            # Names and colours travel with the copy; the colour table must be set before any
            # block reaches the disk (TIFF cannot change its photometric tag afterwards). The
            # nodata value is given to the copy only: on the raw file it would turn never-written
            # tiles into nodata, and the copy must know it from the start because GTiff's
            # CreateCopy leaves out nodata-only tiles.
            apply_description(raw, class_raster_description(classes, values), with_nodata=False)
            # A new GTiff reads as 0 where nothing was written: fill only for another value.
            if values.unlabelled_value != 0:
                check_gdal(
                    raw.GetRasterBand(1).Fill(values.unlabelled_value) == gdal.CE_None,
                    f"Initialising {name}",
                    feedback,
                    raw_path,
                )
            _burn(raw, labels, options, feedback, name, raw_path)
            statistics = _apply_ignore_and_count(raw, reference, values, feedback, name, raw_path)
            raw.FlushCache()
            check_gdal(gdal.GetLastErrorType() < gdal.CE_Failure, f"Writing {name}", feedback, raw_path)

            final = gdal.Translate(
                str(final_temp),
                raw,
                format="GTiff",
                creationOptions=OUTPUT_CREATION_OPTIONS,
                noData=values.ignore_value,
                callback=progress_callback(feedback, 90.0, 100.0),
            )
            check_gdal(final is not None, f"Writing '{output_path}'", feedback, raw_path)
            final.FlushCache()
            final = None
            check_gdal(
                gdal.GetLastErrorType() < gdal.CE_Failure, f"Writing '{output_path}'", feedback, raw_path
            )
        except BaseException as error:
            # A failed step may still hold the raw file open; closing it later would write its
            # .aux.xml again after we removed it.
            release_failed_frames(error)
            raise
        finally:
            raw = None
            for path in (raw_path, Path(f"{raw_path}.aux.xml")):
                path.unlink(missing_ok=True)
    return statistics
