"""Acceptance cases for rsdl:rasterizelabels against reference masks written by others.

Shared by the pytest-qgis suite and the qgis_process suite, so both interfaces are held to the
same oracles: the source projects' own masks (``../shared/data``) and GDAL's rasterizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal, ogr, osr

ABER = "rsgislib_aber_s2"
ABER_GRID = f"{ABER}/sen2_20210527_aber_mosaic.vrt"
ABER_LAYERS = ("cls_forest_smpls", "cls_grass_smpls", "cls_urban_smpls", "cls_water_smpls")
SPARSE = {"UNLABELLED": 1, "IGNORE_VALUE": 0}  # the aber masks: unlabelled is nodata 0


@dataclass(frozen=True)
class ReferenceCase:
    """Parameters for rasterizelabels (paths relative to shared data) and the expected mask."""

    name: str
    parameters: Callable[[Path], dict]
    expected: str
    class_names: dict[int, str] = field(default_factory=dict)


def _aber_class_case(layer: str, value: int, reference: str) -> ReferenceCase:
    return ReferenceCase(
        f"aber-class-{layer}",
        lambda d: {
            "INPUT": [str(d / ABER / "single_class_layers" / f"{layer}.gpkg")],
            "REFERENCE": str(d / ABER_GRID),
            "BURN_VALUE": value,
            **SPARSE,
        },
        f"{ABER}/reference_class_masks/{reference}_1226565d33.tif",
    )


REFERENCE_CASES = [
    ReferenceCase(
        "solaris-footprints",
        lambda d: {
            "INPUT": [str(d / "solaris_atlanta/geotiff_labels.geojson")],
            "REFERENCE": str(d / "solaris_atlanta/sample_geotiff.tif"),
            "BURN_VALUE": 255,
            "IGNORE_VALUE": 254,
        },
        "solaris_atlanta/sample_fp_mask_from_geojson.tif",
    ),
    _aber_class_case("cls_forest_smpls", 1, "Forest"),
    _aber_class_case("cls_grass_smpls", 2, "Grass"),
    _aber_class_case("cls_urban_smpls", 3, "Urban"),
    _aber_class_case("cls_water_smpls", 4, "Water"),
    ReferenceCase(
        "aber-4class-field",
        lambda d: {
            "INPUT": [str(d / ABER / "aber_landcover_4class_polygons.gpkg")],
            "REFERENCE": str(d / ABER_GRID),
            "FIELD": "class_id",
            "NAME_FIELD": "class_name",
            **SPARSE,
        },
        f"{ABER}/aber_landcover_4class_refmask.tif",
        {1: "Forest", 2: "Grass", 3: "Urban", 4: "Water"},
    ),
    ReferenceCase(
        "aber-4class-layer-per-class",
        lambda d: {
            "INPUT": [
                f"{d / ABER / 'landcover_samples_by_layer.gpkg'}|layername={layer}" for layer in ABER_LAYERS
            ],
            "REFERENCE": str(d / ABER_GRID),
            **SPARSE,
        },
        f"{ABER}/aber_landcover_4class_refmask.tif",
        {i + 1: layer for i, layer in enumerate(ABER_LAYERS)},
    ),
    ReferenceCase(
        "aber-val-attribute",
        lambda d: {
            "INPUT": [str(d / ABER / "aber_osgb_multi_polys.geojson")],
            "REFERENCE": str(d / ABER_GRID),
            "FIELD": "val",
            **SPARSE,
        },
        f"{ABER}/aber_osgb_multi_polys_rasters.tif",
    ),
    ReferenceCase(
        "aber-binary",
        lambda d: {
            "INPUT": [str(d / ABER / "sen2_20210527_aber_polygons.geojson")],
            "REFERENCE": str(d / ABER_GRID),
            "BURN_VALUE": 1,
            **SPARSE,
        },
        f"{ABER}/sen2_20210527_aber_polys.tif",
    ),
]

KAMPALA_TILES_WITH_BUILDINGS = (
    "OAM-1238448-1046529-21.tif",
    "OAM-1238449-1046530-21.tif",
    "OAM-1238450-1046531-21.tif",
)


def read_band(path: str | Path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    assert dataset is not None, f"cannot open {path}"
    return dataset.GetRasterBand(1).ReadAsArray()


def read_category_names(path: str | Path) -> list[str]:
    """Class names of band 1. GDAL 3.6's GTiff loads the .aux.xml lazily: GetMetadata() first."""
    dataset = gdal.Open(str(path))
    dataset.GetMetadata()
    return dataset.GetRasterBand(1).GetCategoryNames() or []


def gdal_rasterize_oracle(
    vector_path: str | Path,
    grid_raster: str | Path,
    burn: int,
    all_touched: bool = False,
    layer: str | None = None,
    where: str | None = None,
) -> np.ndarray:
    """GDAL's own rasterization of a vector file (reprojected by OGR) on a raster's grid.

    ``layer`` (default: the first) and ``where`` (an OGR SQL filter) pick the features burnt."""
    grid = gdal.Open(str(grid_raster))
    target = gdal.GetDriverByName("MEM").Create("", grid.RasterXSize, grid.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(grid.GetGeoTransform())
    target.SetProjection(grid.GetProjection())
    srs = osr.SpatialReference(wkt=grid.GetProjection())
    reprojected = gdal.VectorTranslate(
        "",
        str(vector_path),
        format="Memory",
        dstSRS=srs,
        reproject=True,
        layers=[layer] if layer else None,
        where=where,
    )  # OGR reprojection: an oracle independent of QGIS's transform
    options = ["ALL_TOUCHED=TRUE"] if all_touched else []
    burnt = reprojected.GetLayer(0)
    assert gdal.RasterizeLayer(target, [1], burnt, burn_values=[burn], options=options) == 0
    return target.GetRasterBand(1).ReadAsArray()


def valid_feature_count(vector_path: str | Path) -> tuple[int, int]:
    """(features, invalid features) of a vector file, by OGR/GEOS."""
    datasource = ogr.Open(str(vector_path))
    layer = datasource.GetLayer(0)
    total = invalid = 0
    for feature in layer:
        total += 1
        geometry = feature.GetGeometryRef()
        invalid += int(geometry is not None and not geometry.IsValid())
    return total, invalid
