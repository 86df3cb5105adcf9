"""One nodata rule everywhere: inference's readers, chip export and rasterizelabels' REFERENCE mark
the same pixels of a raster whose bands have different nodata values.

The oracle is numpy on the arrays written: a pixel is nodata when any band read is nodata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry, QgsRasterLayer, QgsVectorLayer

from rsdl_qgis_plugin.core.datasets.chips import ChipWindow
from rsdl_qgis_plugin.qgis_io.chip_writer import StripReader
from rsdl_qgis_plugin.qgis_io.processing_grid import processing_grid
from rsdl_qgis_plugin.qgis_io.provider_reader import ProviderWindowReader
from rsdl_qgis_plugin.qgis_io.raster_nodata import has_nodata, nodata_rows
from rsdl_qgis_plugin.qgis_io.stripe_reader import stripe_reader_factory

SIZE = 64
ORIGIN = (500000.0, 100000.0)  # EPSG:32636, 1 m pixels
IGNORE = 255


def _scene(dtype: type) -> tuple[np.ndarray, list[float | None]]:
    """3 bands and their nodata values: a nodata collar in every band, and scattered pixels
    where exactly one band is nodata (or, in floats, not finite)."""
    rng = np.random.default_rng(7)
    values = rng.integers(40, 250, (3, SIZE, SIZE)).astype(dtype)
    if dtype == np.uint8:
        nodata: list[float | None] = [10.0, 20.0, 30.0]
        values[0, 30:34, :] = 20  # band 2's nodata value in band 1: data
    else:
        nodata = [float("nan"), -9999.0, None]  # NaN nodata, a plain value, no nodata at all
        values[2, 40, 5:9] = [np.inf, -np.inf, np.nan, np.inf]  # non-finite without nodata
        values[1, 41, 5:9] = np.nan  # non-finite in a band whose nodata is another value
    for band, value in enumerate(nodata):
        fill = value if value is not None else np.nan
        values[band, :3, :] = fill  # the collar
        # about 4% of the pixels are nodata in this band only
        only_here = rng.random((SIZE, SIZE)) < 0.04
        only_here[:3, :] = False
        values[band][only_here] = fill
    return values, nodata


def _oracle(values: np.ndarray, nodata: list[float | None]) -> np.ndarray:
    missing = np.zeros(values.shape[1:], dtype=bool)
    for band, value in zip(values, nodata):
        if value is not None:
            missing |= np.isnan(band) if np.isnan(value) else band == value
        if band.dtype.kind == "f":
            missing |= ~np.isfinite(band)
    return missing


def _write(path: Path, values: np.ndarray, nodata: list[float | None]) -> Path:
    """A GeoTIFF of ``values`` and a VRT over it at ``path`` that gives each band its own nodata
    value (a GeoTIFF holds one nodata value for all its bands)."""
    gdal_type = gdal.GDT_Byte if values.dtype == np.uint8 else gdal.GDT_Float32
    tiff = path.with_suffix(".tif")
    dataset = gdal.GetDriverByName("GTiff").Create(str(tiff), SIZE, SIZE, 3, gdal_type)
    dataset.SetGeoTransform((ORIGIN[0], 1.0, 0.0, ORIGIN[1], 0.0, -1.0))
    dataset.SetProjection("EPSG:32636")
    for index, plane in enumerate(values, start=1):
        dataset.GetRasterBand(index).WriteArray(plane)
    dataset = None
    dataset = gdal.Translate(str(path), str(tiff), format="VRT")
    for index, value in enumerate(nodata, start=1):
        if value is not None:
            dataset.GetRasterBand(index).SetNoDataValue(value)
    dataset = None
    return path


@pytest.fixture(params=[np.uint8, np.float32], ids=["uint8", "float32"])
def scene(request, tmp_path) -> tuple[Path, np.ndarray, list[float | None]]:
    values, nodata = _scene(request.param)
    path = _write(tmp_path / "scene.vrt", values, nodata)
    # The raster holds what the oracle sees, each band's own nodata value included.
    dataset = gdal.Open(str(path))
    written = [dataset.GetRasterBand(i).GetNoDataValue() for i in (1, 2, 3)]
    assert [None if v is None else ("nan" if np.isnan(v) else v) for v in written] == [
        None if v is None else ("nan" if np.isnan(v) else v) for v in nodata
    ]
    np.testing.assert_array_equal(dataset.ReadAsArray(), values)
    assert _one_band_only(values, nodata) > 300  # where the any-band and every-band rules differ
    return path, values, nodata


def _one_band_only(values: np.ndarray, nodata: list[float | None]) -> int:
    """Pixels nodata in exactly one band: where the any-band and every-band rules differ."""
    per_band = np.stack([_oracle(band[None], [value]) for band, value in zip(values, nodata)])
    return int((per_band.sum(axis=0) == 1).sum())


def test_inference_readers_mark_any_band_nodata(scene, qgis_app):
    path, values, nodata = scene
    expected = _oracle(values, nodata)
    layer = QgsRasterLayer(str(path), "scene", "gdal")
    assert layer.isValid()
    grid, _ = processing_grid(layer, None, None, False)
    assert (grid.width, grid.height) == (SIZE, SIZE)
    for bands in ((1, 2, 3), (2,), (3, 1)):  # only the bands read count
        subset = [b - 1 for b in bands]
        band_expected = _oracle(values[subset], [nodata[i] for i in subset])
        provider = ProviderWindowReader(layer.dataProvider().clone(), grid, bands)
        data, valid = provider.read(0, 0, SIZE, SIZE)
        np.testing.assert_array_equal(~valid, band_expected, err_msg=f"provider reader, bands {bands}")
        assert np.isfinite(data).all()
        factory = stripe_reader_factory(layer, grid, bands)
        assert factory is not None, "the stripe reader should serve this raster"
        _, stripe_valid = factory().read(0, 0, SIZE, SIZE)
        np.testing.assert_array_equal(~stripe_valid, band_expected, err_msg=f"stripe reader, bands {bands}")
    assert expected.sum() > 600 and not expected.all()


def test_chip_export_masks_any_band_nodata(scene):
    path, values, nodata = scene
    expected = _oracle(values, nodata)
    image = gdal.Open(str(path))
    mask = gdal.GetDriverByName("MEM").Create("", SIZE, SIZE, 1, gdal.GDT_Byte)
    mask.GetRasterBand(1).WriteArray(np.ones((SIZE, SIZE), dtype=np.uint8))
    assert has_nodata(image)
    strip = StripReader(image, mask, SIZE).read(0)
    np.testing.assert_array_equal(strip.nodata, expected)
    chip = strip.mask_chip(ChipWindow(0, 0, SIZE), IGNORE)
    np.testing.assert_array_equal(chip == IGNORE, expected)
    # Reading the values itself (rasterizelabels' REFERENCE does) gives the same rows.
    np.testing.assert_array_equal(nodata_rows(image, 10, 20), expected[10:30])


def test_float_raster_without_nodata_still_masks_non_finite_values(tmp_path):
    values = np.ones((2, 8, 8), dtype=np.float32)
    values[1, 2, 3] = np.nan
    image = gdal.Open(str(_write_bands(tmp_path / "plain.tif", values)))
    assert has_nodata(image)  # no nodata value, but a float band can hold NaN
    expected = np.zeros((8, 8), dtype=bool)
    expected[2, 3] = True
    np.testing.assert_array_equal(nodata_rows(image, 0, 8), expected)


def _write_bands(path: Path, values: np.ndarray) -> Path:
    rows, cols = values.shape[1:]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, len(values), gdal.GDT_Float32)
    for index, plane in enumerate(values, start=1):
        dataset.GetRasterBand(index).WriteArray(plane)
    dataset = None
    return path


def test_rasterize_reference_ignores_any_band_nodata(scene, run_algorithm, tmp_path):
    path, values, nodata = scene
    expected = _oracle(values, nodata)
    labels = QgsVectorLayer("Polygon?field=cls:integer", "labels", "memory")
    labels.setCrs(QgsCoordinateReferenceSystem("EPSG:32636"))
    feature = QgsFeature(labels.fields())
    x0, y0 = ORIGIN
    left_half = f"POLYGON(({x0} {y0}, {x0 + 32} {y0}, {x0 + 32} {y0 - 64}, {x0} {y0 - 64}, {x0} {y0}))"
    feature.setGeometry(QgsGeometry.fromWkt(left_half))
    feature.setAttribute(0, 1)
    labels.dataProvider().addFeatures([feature])
    output = tmp_path / "mask.tif"
    run_algorithm(
        "rsdl:rasterizelabels",
        {"INPUT": [labels], "FIELD": "cls", "REFERENCE": str(path), "OUTPUT": str(output)},
    )
    mask = gdal.Open(str(output)).ReadAsArray()
    np.testing.assert_array_equal(mask == IGNORE, expected)
    assert set(np.unique(mask[:, :32][~expected[:, :32]])) == {1}  # the label, outside nodata
    assert set(np.unique(mask[:, 32:][~expected[:, 32:]])) == {0}  # background
