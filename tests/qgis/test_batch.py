"""rsdl:segment and rsdl:detect in batch over several rasters give what single runs give.

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

from tests import detector_models
from tests.e2e.conftest import qgis_process  # noqa: F401 (fixture)
from tests.object_scenes import read_features, write_object_scene
from tests.rasterize_cases import read_band, read_category_names

ALG = "rsdl:segment"
DETECT = "rsdl:detect"


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


# -- rsdl:detect ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def object_rasters(tmp_path_factory) -> tuple[list[Path], list[int], Path]:
    """Scenes of painted objects of different sizes and origins, their object counts, and a
    YOLOv8-layout detector."""
    folder = tmp_path_factory.mktemp("object_batch")
    first = write_object_scene(folder / "a", size=640, seed=11)
    second = write_object_scene(folder / "b", size=480, seed=5)
    crop = folder / "a_crop.tif"  # cut between grid cells: no object cut, 9 of the 15 kept
    gdal.Translate(str(crop), str(first.raster), srcWin=[160, 160, 480, 480])
    rasters = [first.raster, second.raster, crop]
    return (
        rasters,
        [len(first.painted), len(second.painted), 9],
        detector_models.yolov8_detector(folder / "m.onnx"),
    )


def _detect_parameters(raster: Path, model: Path, output: Path) -> dict:
    # Small overlapping tiles: objects are merged across seams in every row of the batch.
    return {
        "INPUT": str(raster),
        "MODEL": str(model),
        "OUTPUT": str(output),
        "TILE_SIZE": 320,
        "OVERLAP": 31.25,
    }


def test_detect_batch_dialog_loop_equals_single_runs(object_rasters, run_processing, rsdl_provider, tmp_path):
    rasters, counts, model = object_rasters
    singles = []
    for index, raster in enumerate(rasters):  # a new algorithm instance per run
        output = tmp_path / f"single_{index}.gpkg"
        singles.append((run_processing(DETECT, _detect_parameters(raster, model, output)), output))
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(DETECT)
    feedback = QgsProcessingFeedback()
    for index, raster in enumerate(rasters):  # one instance over every row, as the batch dialog
        output = tmp_path / f"batch_{index}.gpkg"
        parameters = algorithm.preprocessParameters(_detect_parameters(raster, model, output))
        results, ok = algorithm.run(parameters, QgsProcessingContext(), feedback)
        assert ok, f"row {index} ({raster.name}) failed"
        single, single_output = singles[index]
        assert results["OUTPUT"] == str(output)
        assert results["OBJECTS"] == single["OBJECTS"] == counts[index]
        assert results["COUNTS"] == single["COUNTS"] and results["TILES"] == single["TILES"]
        assert read_features(output) == read_features(single_output)  # same objects, same geometries
    assert len({single["TILES"] for single, _ in singles}) > 1  # the rows really differ
