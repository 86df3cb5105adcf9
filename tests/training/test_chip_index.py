"""Chip index (training/data/chip_index.py): raster headers and chip footprints against rasterio,
chips kept by core's rules from the cached masks."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import gdal
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from rsdl_qgis_plugin.core.datasets.chips import ChipMode, ChipRules, ChipWindow, SplitSettings
from training.data.chip_index import RasterInfo, build_chip_index


def test_raster_info_agrees_with_rasterio(raster_writer, tmp_path):
    path = raster_writer(tmp_path / "a.tif", np.zeros((2, 30, 50), np.uint16), pixel_size=2.0, nodata=0)
    info = RasterInfo.read(str(path))
    assert (info.width, info.height, info.count, info.dtype) == (50, 30, 2, "uint16")
    assert info.nodata == (0.0, 0.0) and info.pixel_size == (2.0, 2.0)
    with rasterio.open(path) as source:
        assert info.bounds == tuple(source.bounds)
        left, bottom, right, top = window_bounds(Window(6, 4, 8, 8), source.transform)
    assert info.footprint(ChipWindow(row=4, col=6, size=8)) == (left, top, right, bottom)


def test_a_vrt_lists_its_sources_among_its_files(raster_writer, tmp_path):
    tiff = raster_writer(tmp_path / "source.tif", np.zeros((1, 8, 8), np.uint8))
    gdal.BuildVRT(str(tmp_path / "scene.vrt"), [str(tiff)]).FlushCache()
    files = RasterInfo.read(str(tmp_path / "scene.vrt")).files
    assert str(tiff) in files and any(f.endswith("scene.vrt") for f in files)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_rotated_rasters_and_rasters_without_crs_are_refused(tmp_path):
    profile = dict(driver="GTiff", width=4, height=4, count=1, dtype="uint8")
    rotated = tmp_path / "rotated.tif"
    with rasterio.open(
        rotated, "w", crs="EPSG:32636", transform=Affine(1, 0.5, 0, 0.5, -1, 0), **profile
    ) as out:
        out.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="is rotated"):
        RasterInfo.read(str(rotated))
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", transform=Affine(1, 0, 0, 0, -1, 0), **profile) as out:
        out.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="has no CRS"):
        RasterInfo.read(str(bare))


def test_chips_without_labelled_pixels_are_skipped_and_counted(raster_writer, tmp_path):
    image = raster_writer(tmp_path / "image.tif", np.zeros((1, 64, 64), np.uint8))
    mask = np.full((1, 64, 64), 255, dtype=np.uint8)
    mask[0, :5, :5] = 0  # background, labelled
    mask[0, 40:50, 40:50] = 1
    mask_path = raster_writer(tmp_path / "mask.tif", mask, nodata=255)
    index = build_chip_index(
        [RasterInfo.read(str(image))],
        [mask_path],
        chip_size=32,
        stride=32,
        settings=SplitSettings(0.0, 0.0, 64, 0),
        rules=ChipRules(ChipMode.SEGMENTATION, None),
        ignore_value=255,
    )
    assert index["chips"] == {"train": [[0, 0, 0], [0, 32, 32]], "val": [], "test": []}
    assert index["counts"]["train"] == 2 and index["counts"]["skipped_all_ignore"] == 2
    assert index["statistics"]["train"] == {"counts": {"0": 25, "1": 100}, "ignored": 2 * 1024 - 125}
    assert index["blocks"] == {"train": 1, "val": 0, "test": 0}
