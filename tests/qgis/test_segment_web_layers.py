"""rsdl:segment on an XYZ basemap layer (QGIS's wms provider), read through the data provider.

The Kampala GeoTIFF tiles are named after their XYZ tile coordinates, so they are laid out as a
local {z}/{x}/{y}.png tile service; the same model run on a VRT of the GeoTIFFs is the oracle.
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal
from qgis.core import QgsRasterLayer

from tests.rasterize_cases import read_band


def test_xyz_basemap_matches_the_geotiffs(shared_data, test_models, run_algorithm, tmp_path):
    tiles = sorted((shared_data / "fair_kampala_buildings/tiles").glob("OAM-*-21.tif"))
    for tile in tiles:
        _, x, y, z = tile.stem.split("-")
        target = tmp_path / "xyz" / z / x / f"{y}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        gdal.Translate(str(target), str(tile), format="PNG")
    uri = f"type=xyz&url=file://{tmp_path / 'xyz'}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmin=21&zmax=21"
    basemap = QgsRasterLayer(uri, "xyz basemap", "wms")
    assert basemap.isValid()
    gdal.BuildVRT(str(tmp_path / "tiles.vrt"), [str(t) for t in tiles])

    first = gdal.Open(str(shared_data / "fair_kampala_buildings/tiles/OAM-1238449-1046530-21.tif"))
    x0, dx, _, y0, _, dy = first.GetGeoTransform()
    extent = f"{x0},{x0 + 1024 * dx},{y0 + 1024 * dy},{y0} [EPSG:3857]"
    common = {"MODEL": str(test_models["fcn_seg.onnx"]), "EXTENT": extent}
    result = run_algorithm("rsdl:segment", {**common, "INPUT": basemap, "OUTPUT": str(tmp_path / "xyz.tif")})
    run_algorithm(
        "rsdl:segment", {**common, "INPUT": str(tmp_path / "tiles.vrt"), "OUTPUT": str(tmp_path / "vrt.tif")}
    )

    from_web, from_files = read_band(tmp_path / "xyz.tif"), read_band(tmp_path / "vrt.tif")
    assert result["TILES"] > 1
    assert gdal.Open(str(tmp_path / "xyz.tif")).GetGeoTransform()[1] == 0.5  # the model's resolution
    assert from_web.shape == from_files.shape
    assert len(np.unique(from_web)) > 1  # real imagery came through, not a blank
    assert (from_web == from_files).mean() > 0.9  # only the two resamplings differ
