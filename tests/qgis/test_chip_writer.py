"""qgis_io/chip_writer.py: strips of image and mask read through GDAL, and chip GeoTIFFs that GDAL
reads back as the source's windows with the source's styling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from rsdl_qgis_plugin.core.datasets.chips import ChipWindow
from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io.chip_writer import ChipFileWriter, StripReader

WIDTH, HEIGHT = 40, 30
GEOTRANSFORM = (700000.0, 0.25, 0.0, 5500000.0, 0.0, -0.25)


def _srs_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32630)
    return srs.ExportToWkt()


def _pair(folder: Path) -> tuple[gdal.Dataset, gdal.Dataset, np.ndarray, np.ndarray]:
    """A 3-band uint16 image (nodata 0 in band 2 at the top-left) and a styled Byte mask."""
    rng = np.random.default_rng(11)
    image = rng.integers(1, 5000, (3, HEIGHT, WIDTH), dtype=np.uint16)
    image[1, :6, :8] = 0
    mask = rng.integers(0, 3, (HEIGHT, WIDTH), dtype=np.uint8)
    driver = gdal.GetDriverByName("GTiff")
    image_set = driver.Create(str(folder / "image.tif"), WIDTH, HEIGHT, 3, gdal.GDT_UInt16)
    mask_set = driver.Create(str(folder / "mask.tif"), WIDTH, HEIGHT, 1, gdal.GDT_Byte)
    for dataset in (image_set, mask_set):
        dataset.SetGeoTransform(GEOTRANSFORM)
        dataset.SetProjection(_srs_wkt())
    for index, interpretation in enumerate(
        (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand), start=1
    ):
        band = image_set.GetRasterBand(index)
        band.SetNoDataValue(0)
        band.SetColorInterpretation(interpretation)
        band.WriteArray(image[index - 1])
    table = gdal.ColorTable()
    table.SetColorEntry(1, (10, 20, 30, 255))
    table.SetColorEntry(2, (40, 50, 60, 255))
    mask_set.GetRasterBand(1).SetColorTable(table)
    mask_set.SetMetadataItem("RSDL_CLASSES", '{"1": {"name": "a", "color": "#0a141e"}}')
    mask_set.GetRasterBand(1).WriteArray(mask)
    image_set = mask_set = dataset = band = None  # closed: written out before they are opened again
    return gdal.Open(str(folder / "image.tif")), gdal.Open(str(folder / "mask.tif")), image, mask


def test_strips_are_the_rasters_rows_with_any_band_nodata(tmp_path):
    image_set, mask_set, image, mask = _pair(tmp_path)
    reader = StripReader(image_set, mask_set, rows=10)
    strip = reader.read(0)
    np.testing.assert_array_equal(strip.image, image[:, :10])
    np.testing.assert_array_equal(strip.mask, mask[:10])
    expected_nodata = np.zeros((10, WIDTH), dtype=bool)
    expected_nodata[:6, :8] = True
    np.testing.assert_array_equal(strip.nodata, expected_nodata)

    window = ChipWindow(row=0, col=4, size=8)
    np.testing.assert_array_equal(strip.image_chip(window), image[:, :10, 4:12])
    chip = strip.mask_chip(window, ignore_value=255)
    expected = mask[:10, 4:12].copy()
    expected[:6, :4] = 255
    np.testing.assert_array_equal(chip, expected)
    np.testing.assert_array_equal(strip.mask[:10, 4:12], mask[:10, 4:12])  # a copy was changed
    assert not strip.image_all_nodata(window)
    assert not strip.image_all_nodata(ChipWindow(row=0, col=0, size=6))  # rows 6-9 have data
    assert StripReader(image_set, mask_set, rows=6).read(0).image_all_nodata(ChipWindow(row=0, col=0, size=6))

    later = reader.read(20)  # no nodata in these rows: no mask at all
    assert later.nodata is None and later.row == 20
    np.testing.assert_array_equal(later.image, image[:, 20:30])


def test_chips_are_windows_of_the_source_with_its_styling(tmp_path):
    image_set, mask_set, image, mask = _pair(tmp_path)
    grid = RasterGrid(WIDTH, HEIGHT, GEOTRANSFORM, _srs_wkt())
    writer = ChipFileWriter(image_set, mask_set, grid, ignore_value=255)
    window = ChipWindow(row=12, col=20, size=16)
    root = tmp_path / "chips"
    strip = StripReader(image_set, mask_set, rows=16).read(12)
    writer.write_image(root, "images/a.tif", window, strip.image_chip(window))
    writer.write_mask(root, "masks/a.tif", window, strip.mask_chip(window, 255))

    chip = gdal.Open(str(root / "images/a.tif"))
    np.testing.assert_array_equal(chip.ReadAsArray(), image[:, 12:28, 20:36])
    # GDAL's own window of the source has the same geotransform and CRS.
    window_set = gdal.Translate("", image_set, format="MEM", srcWin=[20, 12, 16, 16])
    assert chip.GetGeoTransform() == window_set.GetGeoTransform()
    assert osr.SpatialReference(chip.GetProjection()).IsSame(osr.SpatialReference(image_set.GetProjection()))
    assert chip.GetRasterBand(1).DataType == gdal.GDT_UInt16
    assert [chip.GetRasterBand(i).GetNoDataValue() for i in (1, 2, 3)] == [0, 0, 0]
    assert [chip.GetRasterBand(i).GetColorInterpretation() for i in (1, 2, 3)] == [
        gdal.GCI_RedBand,
        gdal.GCI_GreenBand,
        gdal.GCI_BlueBand,
    ]
    assert chip.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"

    mask_chip = gdal.Open(str(root / "masks/a.tif"))
    np.testing.assert_array_equal(mask_chip.ReadAsArray(), mask[12:28, 20:36])
    assert mask_chip.GetGeoTransform() == window_set.GetGeoTransform()
    band = mask_chip.GetRasterBand(1)
    assert band.GetNoDataValue() == 255
    assert band.GetColorTable().GetColorEntry(2) == (40, 50, 60, 255)
    assert mask_chip.GetMetadataItem("RSDL_CLASSES") == '{"1": {"name": "a", "color": "#0a141e"}}'
    assert not list(root.rglob("*.aux.xml"))  # everything is inside the TIFFs
