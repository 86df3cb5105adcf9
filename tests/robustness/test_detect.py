"""rsdl:detect against hostile models, odd rasters and faults.

Models: the synthetic detectors of tests/detector_models.py, and "canned" detectors built here: a
torch module that returns the same YOLOv8 rows ``[B, 4 + nc, N]`` for every tile whatever it sees,
exported to ONNX, so that each hostile value (NaN, infinity, logits, a flood of candidates) reaches
the decoder exactly as written. Every run also checks that nothing is left beside the output and
that the inputs are unchanged.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from osgeo import gdal, ogr
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProcessingUtils, QgsRasterLayer
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.errors import ModelError
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.inference import detector as detector_module
from rsdl_qgis_plugin.inference.backends import OnnxBackend
from rsdl_qgis_plugin.inference.detector import ObjectDecoder
from tests import detector_models as dm
from tests.cancel_feedback import CancelAt
from tests.log_feedback import LogFeedback
from tests.robustness.inputs import square, write_raster, write_vector
from tests.robustness.test_faults import _used_bytes, small_filesystem

DETECT = "rsdl:detect"
PIXEL = 0.5
X0, Y0 = 500000.0, 5000000.0
GEOTRANSFORM = (X0, PIXEL, 0.0, Y0, 0.0, -PIXEL)
EPSG = 32633
CANNED_TILE = 64


class WarningLog(LogFeedback):
    """Keeps info lines and warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning: str) -> None:
        self.warnings.append(warning)
        super().pushWarning(warning)


class _Canned(nn.Module):
    """Returns ``rows`` ((4 + nc, N), YOLOv8's channels-first layout) for every item of the batch."""

    def __init__(self, rows: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("rows", torch.from_numpy(np.asarray(rows, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows.unsqueeze(0).expand(x.shape[0], -1, -1)


def canned_detector(path: Path, rows: list[list[float]] | np.ndarray, class_count: int = 2) -> Path:
    """A YOLOv8-layout ONNX detector giving ``rows`` (N, 4 + nc: cx, cy, w, h, class scores), padded
    with rows scoring 0 to at least 16 (more rows than columns, as a real detector has)."""
    values = np.asarray(rows, dtype=np.float64)
    values = np.concatenate([values, np.zeros((max(0, 16 - len(values)), values.shape[1]))]).T
    names = {str(k): f"thing_{k}" for k in range(class_count)}
    return dm._export(
        _Canned(values),
        path,
        {"output0": ("batch", 4 + class_count, "anchors")},
        {"model_type": "Detector", "class_names": names},
        {"tile_size": CANNED_TILE},
    )


def scene_raster(path: Path, height: int, width: int, **kwargs: Any) -> Path:
    return write_raster(path, dm.blank_scene(height, width), GEOTRANSFORM, EPSG, **kwargs)


def read_objects(path: Path) -> list[dict[str, Any]]:
    datasource = ogr.Open(str(path))
    assert datasource is not None, f"OGR cannot open {path}"
    layer = datasource.GetLayer(0)
    objects = []
    for feature in layer:
        item = feature.items()
        item["geometry"] = feature.GetGeometryRef().Clone()
        objects.append(item)
    assert len(objects) == layer.GetFeatureCount()
    return objects


def map_box(x1: float, y1: float, x2: float, y2: float, geotransform=GEOTRANSFORM) -> ogr.Geometry:
    """A pixel box as a map polygon of the raster's grid."""
    ox, dx, _, oy, _, dy = geotransform
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)):
        ring.AddPoint_2D(ox + x * dx, oy + y * dy)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    return polygon


def iou(a: ogr.Geometry, b: ogr.Geometry) -> float:
    union = a.Union(b).GetArea()
    return a.Intersection(b).GetArea() / union if union else 0.0


def temp_work_folders() -> set[str]:
    """rsdl:detect's work folders in QGIS's processing temp folder (each run removes its own)."""
    return {path.name for path in Path(QgsProcessingUtils.tempFolder()).glob("rsdl-detect-*")}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes. QGIS caches band statistics beside a raster (<raster>.aux.xml) the first
    time it loads it, as for any layer an analyst adds: load each raster once first."""
    for raster in folder.glob("*.tif"):
        QgsRasterLayer(str(raster), raster.stem, "gdal")
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(run_algorithm, parameters: dict[str, Any], out: Path) -> str:
    """The message of a refused run, after checking it left nothing behind."""
    before = temp_work_folders()
    with pytest.raises(QgsProcessingException) as raised:
        run_algorithm(DETECT, parameters)
    assert not Path(parameters["OUTPUT"]).exists()
    assert leftover_temporaries(out) == [] and list(out.iterdir()) == []
    assert temp_work_folders() <= before
    message = str(raised.value)
    assert "Traceback" not in message
    return message


@pytest.fixture()
def folders(tmp_path) -> tuple[Path, Path]:
    """(inputs, outputs): the outputs' folder must hold nothing but what a run writes."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    return inputs, out


# -- hostile model outputs --------------------------------------------------------------------

GOOD = [32.0, 32.0, 20.0, 10.0, 0.9, 0.0]  # a 20 x 10 px box in the middle of the tile, class 0
NAN, INF = float("nan"), float("inf")


def test_nan_inf_negative_and_far_off_rows_are_dropped_and_counted(run_algorithm, folders):
    inputs, out = folders
    rows = [
        GOOD,
        [NAN, 20.0, 8.0, 8.0, 0.9, 0.0],  # NaN centre
        [20.0, 20.0, INF, 8.0, 0.9, 0.0],  # infinite width: would cover the whole tile's width
        [20.0, 50.0, 8.0, INF, 0.0, 0.9],  # infinite height
        [50.0, 20.0, 8.0, 8.0, INF, 0.0],  # infinite score
        [50.0, 50.0, 8.0, 8.0, NAN, 0.9],  # NaN score
        [10.0, 10.0, -6.0, 6.0, 0.9, 0.0],  # negative width: no box
        [1e6, 1e6, 8.0, 8.0, 0.9, 0.0],  # far outside the tile
        [-500.0, 32.0, 8.0, 8.0, 0.0, 0.9],  # outside to the left
    ]
    model = canned_detector(inputs / "nan.onnx", rows)
    raster = scene_raster(inputs / "scene.tif", CANNED_TILE, CANNED_TILE)
    guard = snapshot(inputs)
    feedback = WarningLog()
    output = out / "objects.gpkg"
    result = run_algorithm(
        DETECT, {"INPUT": str(raster), "MODEL": str(model), "OUTPUT": str(output), "TILE_SIZE": 64}, feedback
    )
    objects = read_objects(output)
    assert result["OBJECTS"] == len(objects) == 1, objects
    (found,) = objects
    assert iou(found["geometry"], map_box(22, 27, 42, 37)) == pytest.approx(1.0)
    assert found["score"] == pytest.approx(0.9) and found["class_name"] == "thing_0"
    assert any("5 candidate rows holding NaN or infinite" in text for text in feedback.warnings), (
        feedback.warnings
    )
    assert snapshot(inputs) == guard and leftover_temporaries(out) == []


def test_logit_scores_are_refused_naming_the_model_and_the_batch(run_algorithm, folders):
    inputs, out = folders
    model = canned_detector(inputs / "logits.onnx", [GOOD, [20.0, 20.0, 8.0, 8.0, 4.25, -3.0]])
    raster = scene_raster(inputs / "scene.tif", CANNED_TILE, CANNED_TILE)
    message = refused(
        run_algorithm,
        {"INPUT": str(raster), "MODEL": str(model), "OUTPUT": str(out / "o.gpkg"), "TILE_SIZE": 64},
        out,
    )
    assert "'logits.onnx'" in message and "score of 4.25" in message and "sigmoid" in message, message
    assert "batch 1" in message, message


def test_a_flood_of_candidates_is_cut_to_the_best_and_stays_bounded(run_algorithm, folders, monkeypatch):
    """100,000 rows above the threshold in one tile: only MAX_CANDIDATES go into suppression."""
    inputs, out = folders
    rng = np.random.default_rng(5)
    count = 100_000
    rows = np.column_stack(
        [
            rng.uniform(0, CANNED_TILE, (count, 2)),
            rng.uniform(1, 3, (count, 2)),
            rng.uniform(0.3, 1.0, count),
            np.zeros(count),
        ]
    )
    model = canned_detector(inputs / "flood.onnx", rows)
    raster = scene_raster(inputs / "scene.tif", CANNED_TILE, CANNED_TILE)
    sizes: list[int] = []
    original = detector_module.nms

    def counting_nms(detections, *args, **kwargs):
        sizes.append(len(detections))
        return original(detections, *args, **kwargs)

    monkeypatch.setattr(detector_module, "nms", counting_nms)
    feedback = WarningLog()
    started = time.perf_counter()
    result = run_algorithm(
        DETECT,
        {"INPUT": str(raster), "MODEL": str(model), "OUTPUT": str(out / "o.gpkg"), "TILE_SIZE": 64},
        feedback,
    )
    elapsed = time.perf_counter() - started
    print(f"100,000 candidates in one tile: {elapsed:.1f} s, {result['OBJECTS']} objects")
    assert sizes and max(sizes) == detector_module.MAX_CANDIDATES
    assert 0 < result["OBJECTS"] <= detector_module.MAX_CANDIDATES
    assert any("1 tiles had more than 30,000 candidates" in text for text in feedback.warnings)
    assert elapsed < 120


def test_outputs_changing_shape_between_batches_are_refused(run_algorithm, folders, monkeypatch):
    """A model whose rows gain a column in the second batch would be read with the wrong columns."""
    inputs, out = folders
    model = dm.yolov8_detector(inputs / "v8.onnx", class_count=2)
    raster = write_raster(inputs / "scene.tif", dm.blank_scene(64, 64 * 3), GEOTRANSFORM, EPSG)
    original = OnnxBackend._forward
    calls = []

    def widening(self, batch):
        calls.append(len(batch))
        outputs = original(self, batch)
        if len(calls) >= 2:  # the first batch as declared, then a wider output
            outputs = [np.concatenate([outputs[0], outputs[0][:, :1]], axis=1)]
        return outputs

    monkeypatch.setattr(OnnxBackend, "_forward", widening)
    message = refused(
        run_algorithm,
        {
            "INPUT": str(raster),
            "MODEL": str(model),
            "OUTPUT": str(out / "o.gpkg"),
            "TILE_SIZE": 64,
            "OVERLAP": 0,
            "BATCH_SIZE": 1,
        },
        out,
    )
    assert "'v8.onnx'" in message and "changed shape between batches" in message, message
    assert "[1, 7, 64]" in message and "batch 2: tiles 2 to 2 of 3" in message, message


def test_a_model_failing_mid_run_names_the_model_and_the_batch(run_algorithm, folders, monkeypatch):
    inputs, out = folders
    model = dm.yolov8_detector(inputs / "v8.onnx", class_count=2)
    raster = write_raster(inputs / "scene.tif", dm.blank_scene(64, 64 * 4), GEOTRANSFORM, EPSG)
    guard = snapshot(inputs)
    import onnxruntime

    original = onnxruntime.InferenceSession.run
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code running Conv node")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", failing)
    message = refused(
        run_algorithm,
        {
            "INPUT": str(raster),
            "MODEL": str(model),
            "OUTPUT": str(out / "o.gpkg"),
            "TILE_SIZE": 64,
            "OVERLAP": 0,
            "BATCH_SIZE": 2,
        },
        out,
    )
    assert "v8.onnx" in message and "Conv node" in message, message
    assert "batch 2: tiles 3 to 4 of 4" in message, message
    assert snapshot(inputs) == guard


def test_rsdl_layout_drops_non_finite_rows_and_refuses_unknown_class_ids():
    spec = ModelSpec.from_metadata(
        {"model_type": json.dumps("Detector"), "class_names": json.dumps({"0": "a", "1": "b"})}
    )
    decoder = ObjectDecoder(
        spec, [(None, 4, 4), (None, 4), (None, 4)], ["boxes", "scores", "class_ids"], "rsdl.onnx"
    )
    boxes = np.array([[[1, 1, 5, 5], [NAN, 1, 5, 5], [2, 2, INF, 8], [9, 9, 12, 12]]])
    scores = np.array([[0.9, 0.9, 0.9, NAN]])
    class_ids = np.array([[0.0, 1.0, 1.0, 1.0]])
    (found,) = decoder.decode([boxes, scores, class_ids], 0.25, 0.45, False, 16)
    assert found.boxes.tolist() == [[1, 1, 5, 5]] and decoder.non_finite_rows == 3
    class_ids[0, 0] = 5
    with pytest.raises(ModelError, match=r"'rsdl.onnx' gave class id 5, but its 'class_names' name 2"):
        decoder.decode([boxes, scores, class_ids], 0.25, 0.45, False, 16)


# -- odd rasters -------------------------------------------------------------------------------


def run_detect(run_algorithm, raster: Path, model: Path, out: Path, **extra: Any):
    feedback = WarningLog()
    parameters = {"INPUT": str(raster), "MODEL": str(model), "OUTPUT": str(out / "objects.gpkg"), **extra}
    result = run_algorithm(DETECT, parameters, feedback)
    assert leftover_temporaries(out) == []
    return result, read_objects(out / "objects.gpkg"), feedback


@pytest.fixture()
def v8(folders) -> Path:
    return dm.yolov8_detector(folders[0] / "v8.onnx", class_count=3)


def test_all_nodata_raster_warns_and_writes_an_empty_layer(run_algorithm, folders, v8):
    inputs, out = folders
    scene = dm.blank_scene(96, 96)
    raster = write_raster(inputs / "nodata.tif", scene, GEOTRANSFORM, EPSG, nodata=0)
    result, objects, feedback = run_detect(run_algorithm, raster, v8, out, TILE_SIZE=64)
    assert objects == [] and result["OBJECTS"] == 0 and result["TILES"] == 0
    assert any("Every tile of raster" in text and "nodata" in text for text in feedback.warnings)


def test_raster_smaller_than_a_tile(run_algorithm, folders):
    """The tile is padded: an object inside the raster is kept where it is, one centred in the
    padding is dropped."""
    inputs, out = folders
    model = canned_detector(inputs / "canned.onnx", [GOOD, [60.0, 20.0, 10.0, 10.0, 0.0, 0.8]])
    raster = scene_raster(inputs / "small.tif", 40, 56)
    result, objects, _ = run_detect(run_algorithm, raster, model, out, TILE_SIZE=64)
    assert result["TILES"] == 1 and len(objects) == 1, objects
    assert iou(objects[0]["geometry"], map_box(22, 27, 42, 37)) == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(1, 300), (300, 1)])
def test_one_pixel_wide_strips(run_algorithm, folders, v8, shape):
    inputs, out = folders
    scene = dm.blank_scene(*shape)
    scene[0] = 255  # every pixel an object pixel
    raster = write_raster(inputs / "strip.tif", scene, GEOTRANSFORM, EPSG)
    result, objects, _ = run_detect(run_algorithm, raster, v8, out, TILE_SIZE=64)
    assert result["TILES"] >= 1
    for item in objects:  # whatever the model finds lies on the strip
        envelope = item["geometry"].GetEnvelope()
        assert envelope[0] >= X0 - 1e-6 and envelope[1] <= X0 + shape[1] * PIXEL + 1e-6
        assert envelope[2] >= Y0 - shape[0] * PIXEL - 1e-6 and envelope[3] <= Y0 + 1e-6


def test_alpha_band_transparent_part_holds_no_object(run_algorithm, folders, v8):
    inputs, out = folders
    scene = dm.blank_scene(128, 128)
    kept = dm.paint_rectangle(scene, 20, 20, 24, 24, 0)
    dm.paint_rectangle(scene, 80, 80, 24, 24, 0)  # under the transparent half
    alpha = np.full((1, 128, 128), 255, np.uint8)
    alpha[0, 64:, 64:] = 0
    raster = write_raster(inputs / "alpha.tif", np.concatenate([scene, alpha]), GEOTRANSFORM, EPSG)
    dataset = gdal.Open(str(raster), gdal.GA_Update)
    dataset.GetRasterBand(4).SetColorInterpretation(gdal.GCI_AlphaBand)
    dataset = None
    _, objects, _ = run_detect(run_algorithm, raster, v8, out, TILE_SIZE=64)
    assert len(objects) == 1, objects
    assert iou(objects[0]["geometry"], map_box(*kept.box)) > 0.9


def test_geographic_crs(run_algorithm, folders, v8):
    inputs, out = folders
    scene = dm.blank_scene(128, 128)
    painted = dm.paint_rectangle(scene, 10, 12, 24, 36, 2)  # inside the first tile
    degrees = (30.0, 1e-5, 0.0, 10.0, 0.0, -1e-5)
    raster = write_raster(inputs / "geographic.tif", scene, degrees, 4326)
    _, objects, _ = run_detect(run_algorithm, raster, v8, out, TILE_SIZE=64, RESAMPLE=False)
    assert len(objects) == 1 and objects[0]["class_id"] == 2
    assert iou(objects[0]["geometry"], map_box(*painted.box, geotransform=degrees)) > 0.9
    datasource = ogr.Open(str(out / "objects.gpkg"))  # must outlive its layer
    assert datasource.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == "4326"


def test_extent_off_the_raster_is_refused(run_algorithm, folders, v8):
    inputs, out = folders
    raster = scene_raster(inputs / "scene.tif", 64, 64)
    far = f"{X0 + 10_000},{X0 + 10_100},{Y0 + 10_000},{Y0 + 10_100} [EPSG:{EPSG}]"
    message = refused(
        run_algorithm,
        {"INPUT": str(raster), "MODEL": str(v8), "OUTPUT": str(out / "o.gpkg"), "EXTENT": far},
        out,
    )
    assert "processing extent does not overlap raster 'scene'" in message, message


def test_area_polygons_keep_only_the_objects_inside(run_algorithm, folders, v8):
    inputs, out = folders
    scene = dm.blank_scene(160, 160)
    inside = dm.paint_rectangle(scene, 16, 16, 24, 24, 0)
    dm.paint_rectangle(scene, 110, 110, 24, 24, 0)
    raster = write_raster(inputs / "scene.tif", scene, GEOTRANSFORM, EPSG)
    area = write_vector(inputs / "area.gpkg", [(square(X0, Y0, 40.0), {})], epsg=EPSG, fields={})
    _, objects, _ = run_detect(run_algorithm, raster, v8, out, TILE_SIZE=64, AREA=str(area))
    assert len(objects) == 1, objects
    assert iou(objects[0]["geometry"], map_box(*inside.box)) > 0.9


# -- faults ------------------------------------------------------------------------------------


def busy_scene(inputs: Path, size: int = 320) -> tuple[Path, Path]:
    """A scene with many objects and a -seg model (instance polygons write the most)."""
    scene = dm.blank_scene(size, size)
    for row in range(8, size - 24, 32):
        for col in range(8, size - 24, 32):
            dm.paint_rectangle(scene, row, col, 18, 20, (row + col) // 32 % 3)
    return write_raster(inputs / "busy.tif", scene, GEOTRANSFORM, EPSG), dm.yolov8_seg_detector(
        inputs / "seg.onnx"
    )


def test_full_disk_while_writing_gives_a_clear_error_and_no_partial_output(run_algorithm, folders, tmp_path):
    inputs, _ = folders
    raster, model = busy_scene(inputs)

    def parameters(disk: Path) -> dict[str, Any]:
        return {
            "INPUT": str(raster),
            "MODEL": str(model),
            "OUTPUT": str(disk / "objects.gpkg"),
            "TILE_SIZE": 128,
            "OUTPUT_GEOMETRY": 1,
        }

    with small_filesystem(tmp_path / "disk", 64 * 2**20) as disk:
        result = run_algorithm(DETECT, parameters(disk))
        needed = _used_bytes(disk)
    assert result["OBJECTS"] > 50
    failures = 0
    for share in (0.1, 0.5, 0.9):
        size = max(4096, int(needed * share) // 4096 * 4096)
        with small_filesystem(tmp_path / "disk", size) as disk:
            run = parameters(disk)
            try:
                run_algorithm(DETECT, run)
            except QgsProcessingException as error:
                failures += 1
                message = str(error)
                assert "objects.gpkg" in message and "disk" in message.lower(), message
                assert "Traceback" not in message
                assert not Path(run["OUTPUT"]).exists(), list(disk.iterdir())
                assert leftover_temporaries(disk) == [] and list(disk.iterdir()) == []
            else:
                assert len(read_objects(Path(run["OUTPUT"]))) == result["OBJECTS"]
    assert failures >= 2


def test_full_temporary_folder_gives_a_clear_error(run_algorithm, folders, tmp_path, monkeypatch):
    """The objects are gathered in QGIS's processing temp folder first: it can fill up too."""
    inputs, out = folders
    raster, model = busy_scene(inputs)
    with small_filesystem(tmp_path / "temp", 16 * 4096) as temp:
        monkeypatch.setattr(QgsProcessingUtils, "tempFolder", staticmethod(lambda *args: str(temp)))
        with pytest.raises(QgsProcessingException) as raised:
            run_algorithm(
                DETECT,
                {
                    "INPUT": str(raster),
                    "MODEL": str(model),
                    "OUTPUT": str(out / "objects.gpkg"),
                    "TILE_SIZE": 128,
                    "OUTPUT_GEOMETRY": 1,
                },
            )
        assert list(temp.iterdir()) == []
    message = str(raised.value)
    assert "disk" in message.lower() and "Traceback" not in message, message
    assert list(out.iterdir()) == []


CANCEL_POINTS = sorted(random.Random(12).sample(range(1, 100), 6))


@pytest.mark.parametrize("percent", CANCEL_POINTS)
def test_cancel_at_random_points_leaves_nothing(percent, run_algorithm, folders):
    inputs, out = folders
    raster, model = busy_scene(inputs)
    guard = snapshot(inputs)
    before = temp_work_folders()
    parameters = {
        "INPUT": str(raster),
        "MODEL": str(model),
        "OUTPUT": str(out / "objects.gpkg"),
        "TILE_SIZE": 96,
        "BATCH_SIZE": 1,
        "OUTPUT_GEOMETRY": 1,
    }
    feedback = CancelAt(percent)
    with pytest.raises(QgsProcessingException, match=r"(?i)cancel"):
        run_algorithm(DETECT, parameters, feedback)
    assert list(out.iterdir()) == [] and temp_work_folders() <= before
    assert snapshot(inputs) == guard
    run_algorithm(DETECT, parameters, QgsProcessingFeedback())  # QGIS runs the next job fine
    assert read_objects(out / "objects.gpkg")
