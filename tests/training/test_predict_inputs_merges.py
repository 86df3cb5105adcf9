"""Batch prediction's inputs (gdaltindex and VRT indexes, list files) and whole-area results (a VRT
mosaic, one GeoPackage of objects with pieces cut by raster edges dissolved), with GDAL's own
programs and the detectors of tests/detector_models.py."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely

from rsdl_qgis_plugin.core.errors import RsdlError
from tests import detector_models as models
from tests.training.test_predict_dask import predict_args, scene, write_raster
from tests.training.test_predict_objects import CENTRES, METADATA, PIXEL, box_scene, iou, map_box
from training.batch_inputs import expand_inputs
from training.manifest import Manifest
from training.predict import main


def tiles_of(image: np.ndarray, folder, rows: int, cols: int, x0=455000.0, y0=36000.0, pixel=0.5) -> list:
    """``image`` cut into rows x cols adjacent GeoTIFFs on one grid."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = image.shape[1:]
    paths = []
    for r in range(rows):
        for c in range(cols):
            top, left = r * height // rows, c * width // cols
            bottom, right = (r + 1) * height // rows, (c + 1) * width // cols
            paths.append(
                write_raster(
                    folder / f"t{r}{c}.tif",
                    image[:, top:bottom, left:right],
                    x0 + left * pixel,
                    y0 - top * pixel,
                )
            )
    return paths


def test_a_gdaltindex_index_and_a_vrt_name_the_rasters(tmp_path):
    paths = tiles_of(scene(1, 120, 160), tmp_path / "tiles", 2, 2)
    names = [path.name for path in paths]
    subprocess.run(["gdaltindex", "-f", "GPKG", "index.gpkg", *names], cwd=tmp_path / "tiles", check=True)
    assert expand_inputs([], index=tmp_path / "tiles" / "index.gpkg") == paths  # relative to the index
    subprocess.run(["gdalbuildvrt", "-q", str(tmp_path / "mosaic.vrt"), *map(str, paths)], check=True)
    assert expand_inputs([], index=tmp_path / "mosaic.vrt") == paths

    with pytest.raises(RsdlError, match=r"has no field 'path' \(its fields: location\)"):
        expand_inputs([], index=tmp_path / "tiles" / "index.gpkg", index_field="path")
    (tmp_path / "broken.vrt").write_text("<VRTDataset>")
    with pytest.raises(RsdlError, match="not a readable VRT"):
        expand_inputs([], index=tmp_path / "broken.vrt")
    with pytest.raises(RsdlError, match="No raster matches"):
        expand_inputs([str(tmp_path / "nothing" / "*.tif")])


def test_a_manifest_that_cannot_be_read_names_the_way_out(tmp_path):
    (tmp_path / "rsdl_manifest.json").write_text(json.dumps({"version": 99, "rasters": {}}))
    with pytest.raises(RsdlError, match=r"cannot be read .*move it away to start the job afresh"):
        Manifest(tmp_path)


def test_the_vrt_mosaic_holds_every_raster_output(tmp_path, test_models):
    paths = tiles_of(scene(2, 130, 170), tmp_path / "tiles", 2, 2)
    output = tmp_path / "out"
    vrt = output / "all.vrt"
    args = predict_args(test_models["fcn_seg.onnx"], output, "--index", str(tmp_path / "mosaic.vrt"))
    subprocess.run(["gdalbuildvrt", "-q", str(tmp_path / "mosaic.vrt"), *map(str, paths)], check=True)
    assert main([*args, "--merge-vrt", str(vrt)]) == 0
    with rasterio.open(vrt) as mosaic:
        assert (mosaic.width, mosaic.height, mosaic.count) == (170, 130, 1)
        assert mosaic.colormap(1)[1][:3] != (0, 0, 0)  # the class colours came along
        whole = mosaic.read(1)
        for path in paths:
            with rasterio.open(output / f"{path.stem}_classes.tif") as part:
                window = mosaic.window(*part.bounds)
                rows, cols = window.toslices()
                np.testing.assert_array_equal(whole[rows, cols], part.read(1))
    assert "--merge-objects applies to detectors" in _refusal([*args, "--merge-objects", "x.gpkg"])


def _refusal(args: list[str]) -> str:
    import contextlib
    import io

    error = io.StringIO()
    with contextlib.redirect_stderr(error):
        assert main(args) == 1
    return error.getvalue()


def test_objects_cut_by_the_edge_between_two_rasters_are_dissolved(tmp_path):
    model = models.yolov8_detector(tmp_path / "v8.onnx", metadata=METADATA)
    image, painted = box_scene()
    cut = CENTRES[1][1]  # column 250: through the middle of two objects
    (tmp_path / "tiles").mkdir()
    halves = write_left_right(tmp_path / "tiles", image, cut)
    merged = tmp_path / "out" / "all.gpkg"
    args = [
        str(halves[0]),
        str(halves[1]),
        "--model",
        str(model),
        "--output-dir",
        str(tmp_path / "out"),
        "--tile-size",
        "128",
        "--overlap",
        "40",
        "--threads",
        "1",
        "--merge-objects",
        str(merged),
    ]
    assert main(args) == 0
    meta, _fids, geometries, values = pyogrio.raw.read(merged, layer="objects")
    assert meta["fields"].tolist() == [
        "source",
        "class_id",
        "class_name",
        "score",
        "area",
        "angle",
        "pieces",
        "at_raster_edge",
    ]
    objects = [
        {"geometry": shapely.from_wkb(wkb), **dict(zip(meta["fields"], row))}
        for wkb, row in zip(geometries, zip(*values))
    ]
    assert len(objects) == len(painted)
    assert sum(obj.box[0] < cut < obj.box[2] for obj in painted) == 2  # the objects at column 250
    for obj in painted:
        expected = map_box(obj.box)
        overlap, match = max(((iou(expected, o["geometry"]), o) for o in objects), key=lambda pair: pair[0])
        assert overlap >= 0.8 and match["class_id"] == obj.class_id
        crosses = obj.box[0] < cut < obj.box[2]
        assert match["pieces"] == (2 if crosses else 1)
        assert match["at_raster_edge"] == 0
        assert match["area"] == pytest.approx(match["geometry"].area)
        assert match["source"].count(";") == (1 if crosses else 0)

    detector_args = args[:-2]
    assert "--split-rows applies to segmentation and regression" in _refusal(
        [*detector_args, "--split-rows", "64"]
    )
    assert "--merge-vrt applies to segmentation" in _refusal([*detector_args, "--merge-vrt", "all.vrt"])
    assert "--retries must be at least 0, got -1" in _refusal([*detector_args, "--retries", "-1"])


def write_left_right(folder, image: np.ndarray, cut: int) -> list:
    x0, y0 = 500000.0, 5000000.0  # models.write_scene's origin
    return [
        models.write_scene(folder / "left.tif", image[:, :, :cut], PIXEL),
        _shifted(folder / "right.tif", image[:, :, cut:], x0 + cut * PIXEL, y0),
    ]


def _shifted(path, image: np.ndarray, x0: float, y0: float):
    from tests.rasters import write_geotiff

    return write_geotiff(path, image, (x0, PIXEL, 0.0, y0, 0.0, -PIXEL), 32633)
