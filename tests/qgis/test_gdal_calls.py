"""GDAL failures read the same whether the bindings raise exceptions (QGIS 3.44 switches them on
process-wide) or return error codes (QGIS 3.22): one error that names the analyst's file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import TEMP_MARKER, temporary_sibling
from rsdl_qgis_plugin.qgis_io.chip_writer import StripReader
from rsdl_qgis_plugin.qgis_io.gdal_calls import gdal_errors, gdal_return_codes

HAS_EXCEPTION_MANAGER = hasattr(gdal, "ExceptionMgr")  # GDAL >= 3.7
needs_exception_manager = pytest.mark.skipif(
    not HAS_EXCEPTION_MANAGER, reason="GDAL < 3.7 cannot switch exceptions per thread"
)


@contextlib.contextmanager
def _exceptions(on: bool) -> Iterator[None]:
    """GDAL's bindings on this thread as QGIS 3.44 (on) or 3.22 (off) leaves them."""
    with contextlib.ExitStack() as stack:
        if HAS_EXCEPTION_MANAGER:
            for module in (gdal, ogr):
                stack.enter_context(module.ExceptionMgr(useExceptions=on))
        yield


def _truncated_tiff(path: Path) -> Path:
    """An uncompressed striped GeoTIFF cut in half: the header reads, the pixels do not."""
    whole = path.with_name("whole.tif")
    dataset = gdal.GetDriverByName("GTiff").Create(str(whole), 64, 64, 3, gdal.GDT_Byte)
    dataset.WriteRaster(0, 0, 64, 64, np.arange(64 * 64 * 3, dtype=np.uint8).tobytes())
    dataset = None
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@needs_exception_manager
def test_algorithms_see_return_codes_even_where_exceptions_are_on(tmp_path):
    missing = str(tmp_path / "missing.tif")
    with _exceptions(True):
        with gdal_return_codes():
            assert gdal.Open(missing) is None
            assert ogr.Open(missing) is None
        with pytest.raises(RuntimeError):
            gdal.Open(missing)  # the thread's own setting is back


@pytest.mark.parametrize("exceptions", [False, pytest.param(True, marks=needs_exception_manager)])
def test_a_truncated_image_is_named_the_same_way_with_and_without_exceptions(tmp_path, exceptions):
    image = gdal.Open(str(_truncated_tiff(tmp_path / "truncated.tif")))
    mask = gdal.GetDriverByName("MEM").Create("", 64, 64, 1, gdal.GDT_Byte)
    with _exceptions(exceptions), pytest.raises(RsdlError) as caught:
        StripReader(image, mask, 16).read(48)
    message = str(caught.value)
    assert "truncated.tif" in message and "truncated or corrupt" in message, message


def test_a_raised_gdal_error_names_the_output_and_the_disk(tmp_path):
    temp = temporary_sibling(tmp_path / "classes.tif")
    with pytest.raises(RsdlError) as caught, gdal_errors(f"Writing '{temp}'", path=temp):
        raise RuntimeError(f"{temp}: _tiffWriteProc: No space left on device")
    message = str(caught.value)
    assert str(tmp_path / "classes.tif") in message and TEMP_MARKER not in message, message
    assert "disk may be full" in message, message
