"""rsdl:segment in batch over several rasters gives what single runs give.

QGIS 3.22's batch dialog runs ONE algorithm instance over its rows, each with a new context (see
processing/gui/BatchAlgorithmDialog.py): state left on the instance by one row would leak into the
next. qgis_process 3.22 has no batch input (no JSON parameters on stdin), so a shell batch is one
call per raster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

from tests.e2e.conftest import qgis_process  # noqa: F401 (fixture)
from tests.rasterize_cases import read_band, read_category_names

ALG = "rsdl:segment"


@pytest.fixture(scope="module")
def rasters(sample_scene, shared_data, tmp_path_factory) -> list[Path]:
    """Rasters of different sizes, grids, CRSs and band counts that one model can run on."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    crop = folder / "scene_crop.tif"
    gdal.Translate(str(crop), str(sample_scene / "scene.tif"), srcWin=[37, 50, 300, 260])
    return [
        sample_scene / "scene.tif",
        crop,
        shared_data / "deepness_peer/dummy_fotomap_small.tif",  # RGBA at 2 cm, resampled to 50 cm
    ]


@pytest.fixture(scope="module")
def single_runs(rasters, run_processing, test_models, tmp_path_factory) -> list[Path]:
    """Each raster on its own, through processing.run (a new algorithm instance per run)."""
    folder = tmp_path_factory.mktemp("single")
    outputs = []
    for index, raster in enumerate(rasters):
        output = folder / f"classes_{index}.tif"
        run_processing(
            ALG, {"INPUT": str(raster), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)}
        )
        outputs.append(output)
    return outputs


def _assert_same_classes(actual: Path, expected: Path) -> None:
    assert np.array_equal(read_band(actual), read_band(expected)), f"{actual} differs from {expected}"
    assert read_category_names(actual) == read_category_names(expected)
    assert gdal.Open(str(actual)).GetGeoTransform() == gdal.Open(str(expected)).GetGeoTransform()


def test_batch_dialog_loop_equals_single_runs(rasters, single_runs, rsdl_provider, test_models, tmp_path):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    feedback = QgsProcessingFeedback()
    for index, raster in enumerate(rasters):
        output = tmp_path / f"batch_{index}.tif"
        parameters = algorithm.preprocessParameters(
            {"INPUT": str(raster), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)}
        )
        results, ok = algorithm.run(parameters, QgsProcessingContext(), feedback)
        assert ok, f"row {index} ({raster.name}) failed"
        assert results["OUTPUT"] == str(output)
        _assert_same_classes(output, single_runs[index])
    shapes = {read_band(path).shape for path in single_runs}
    assert len(shapes) == len(rasters)  # the rows really differ


@pytest.mark.qgis_process
def test_qgis_process_one_call_per_raster_equals_single_runs(
    rasters,
    single_runs,
    qgis_process,  # noqa: F811 (the fixture imported above)
    test_models,
    tmp_path,
):
    for index, raster in enumerate(rasters[:2]):
        output = tmp_path / f"shell_{index}.tif"
        result = qgis_process.run_algorithm(
            ALG, {"INPUT": str(raster), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)}
        )
        assert result["results"]["OUTPUT"] == str(output)
        _assert_same_classes(output, single_runs[index])
