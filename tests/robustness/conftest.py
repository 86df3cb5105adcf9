"""Fixtures of the robustness suite: the hostile inputs, QGIS in-process and qgis_process.

The in-process (pytest-qgis) and qgis_process fixtures are those of tests/qgis and tests/e2e,
re-exported so both kinds of run see the same plugin the same way.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.e2e.conftest import qgis_process  # noqa: F401 (fixture)
from tests.qgis.conftest import rsdl_provider, run_algorithm, run_processing  # noqa: F401 (fixtures)
from tests.robustness.checks import Inputs
from tests.robustness.inputs import write_rasters, write_vectors

RGB_BYTE = "rasterio_rgb/RGB.byte.tif"


@pytest.fixture(scope="session")
def hostile(tmp_path_factory, qgis_app, test_models, shared_data) -> Inputs:
    """Every bad raster and vector, the test models and the real scene with a nodata collar."""
    from qgis.core import QgsRasterLayer

    folder = tmp_path_factory.mktemp("hostile")
    paths = {**write_rasters(folder), **write_vectors(folder)}
    # QGIS caches band statistics in <raster>.aux.xml the first time it loads a raster (as when an
    # analyst adds the layer, and for QGIS's own algorithms too). Load each raster once here, so
    # the suite can demand that a run changes nothing at all beside its inputs.
    for path in paths.values():
        if path.suffix == ".tif":
            QgsRasterLayer(str(path), path.stem, "gdal")
    gc.collect()
    paths["rgb_byte"] = shared_data / RGB_BYTE
    return Inputs(folder, paths, {name: Path(path) for name, path in test_models.items()})
