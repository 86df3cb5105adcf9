"""Label masks burnt strip by strip (training/data/rasterize.py) equal GDAL's rasterizer run over the
whole raster at once; nodata pixels take the ignore value."""

from __future__ import annotations

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize as gdal_rasterize

from rsdl_qgis_plugin.core.labels.label_rules import MaskValues, make_label_classes
from training.data import rasterize
from training.data.rasterize import write_label_mask

ORIGIN = (450000.0, 40000.0)


def _box(col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    x, y = ORIGIN
    return shapely.box(x + col0, y - row1, x + col1, y - row0)


def test_strips_give_the_whole_raster_rasterization(raster_writer, tmp_path, monkeypatch):
    pixels = np.full((2, 50, 40), 100, dtype=np.uint8)
    pixels[:, 45:, 30:] = 0  # nodata in both bands
    pixels[1, 2, 3] = 0  # nodata in one band only
    raster = raster_writer(tmp_path / "scene.tif", pixels, origin=ORIGIN, nodata=0)
    shapes = [
        (_box(5, 3, 30, 20), 1),  # across the strip edges at rows 7, 14
        (_box(10, 10, 35, 40), 2),  # overlaps the first: burnt later, it wins
        (_box(0, 30, 8.5, 49.2), 1),  # edges inside pixels
    ]
    monkeypatch.setattr(rasterize, "ROWS_PER_STRIP", 7)
    values = MaskValues(background_value=0, ignore_value=255)
    output = tmp_path / "mask.tif"
    statistics = write_label_mask(raster, shapes, make_label_classes({1: "a", 2: "b"}), values, output)
    with rasterio.open(raster) as source:
        expected = gdal_rasterize(
            shapes, out_shape=(50, 40), fill=0, transform=source.transform, dtype="uint8"
        )
    expected[pixels.min(axis=0) == 0] = 255
    with rasterio.open(output) as mask:
        written = mask.read(1)
        assert mask.nodata == 255 and mask.dtypes[0] == "uint8" and mask.crs.to_epsg() == 32636
    np.testing.assert_array_equal(written, expected)
    assert (written == 2).any() and (written[10:20, 10:30] == 2).all()
    values_, counts = np.unique(expected[expected != 255], return_counts=True)
    assert statistics.counts == dict(zip(values_.tolist(), counts.tolist()))
    assert statistics.ignored == int((expected == 255).sum())
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed


def test_sparse_labels_leave_unlabelled_pixels_ignored_and_big_values_widen_the_mask(raster_writer, tmp_path):
    raster = raster_writer(tmp_path / "scene.tif", np.full((1, 10, 10), 5, np.uint8), origin=ORIGIN)
    values = MaskValues(background_value=0, ignore_value=65535, unlabelled_is_ignore=True)
    output = tmp_path / "mask.tif"
    write_label_mask(raster, [(_box(0, 0, 4, 4), 300)], make_label_classes({300: "tall"}), values, output)
    with rasterio.open(output) as mask:
        written = mask.read(1)
        assert mask.dtypes[0] == "uint16"
    assert (written[:4, :4] == 300).all() and (written[4:, :] == 65535).all()
