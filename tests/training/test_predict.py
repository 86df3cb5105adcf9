"""Batch prediction: equal to the plugin's engine run in-process, georeferenced like the input,
the same with several worker processes, and complete-or-absent when a raster fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.labels.label_rules import hex_to_rgb
from rsdl_qgis_plugin.core.tiling.blending import BlendMode
from rsdl_qgis_plugin.inference.backends import load_model
from rsdl_qgis_plugin.inference.engine import InferenceSettings, TiledInference
from rsdl_qgis_plugin.inference.sinks import SegmentationSink
from training.batch_inputs import expand_inputs, output_folders
from training.predict import main

CRS = "EPSG:32636"
TRANSFORM = from_origin(455000.0, 36000.0, 0.5, 0.5)


def write_raster(path, data: np.ndarray, nodata: float | None = 0) -> None:
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2]}
    with rasterio.open(
        path, "w", **profile, dtype=data.dtype, crs=CRS, transform=TRANSFORM, nodata=nodata
    ) as out:
        out.write(data)


def scene(seed: int, height: int, width: int) -> np.ndarray:
    """Smooth colour fields (so the model predicts several classes) with a nodata corner."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    data = np.stack([128 + 120 * np.sin(rows / (9 + 3 * b) + cols / (13 - 2 * b) + b) for b in range(3)])
    data = np.clip(data + rng.normal(0, 10, data.shape), 1, 255).astype(np.uint8)
    data[:, :18, :26] = 0  # nodata (all bands)
    return data


class ArrayReader:
    """The engine's reader over the in-memory array: valid where no band is 0 (the nodata value)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def read(self, row, col, rows, cols):
        data = self.image[:, row : row + rows, col : col + cols]
        return data.astype(np.float32), (data != 0).all(axis=0)


class Collect:
    def __init__(self, height: int, width: int, dtype) -> None:
        self.values = np.zeros((height, width), dtype=dtype)

    def write_rows(self, first_row, values):
        self.values[first_row : first_row + values.shape[1]] = values[0]


def predict_args(model, output, *extra: str) -> list[str]:
    common = [
        "--tile-size",
        "64",
        "--overlap",
        "25",
        "--batch-size",
        "3",
        "--blend",
        "pyramid",
        "--threads",
        "1",
    ]
    return ["--model", str(model), "--output-dir", str(output), "--confidence", *common, *extra]


def test_predict_equals_the_plugin_engine_in_process(tmp_path, test_models):
    model = test_models["fcn_seg.onnx"]
    data = scene(0, 110, 150)
    write_raster(tmp_path / "scene.tif", data)
    assert main([str(tmp_path / "scene.tif"), *predict_args(model, tmp_path / "out")]) == 0

    backend = load_model(model, threads=1, device="cpu")
    settings = InferenceSettings(tile_size=64, overlap=16, batch_size=3, blend_mode=BlendMode.PYRAMID)
    engine = TiledInference(backend, backend.spec, (1, 2, 3), settings, 150, 110)
    classes, confidence = Collect(110, 150, np.uint8), Collect(110, 150, np.float32)
    engine.run(
        lambda: ArrayReader(data),
        [SegmentationSink(classes, confidence, backend.spec.seg_thresh, np.dtype(np.uint8), 255)],
    )

    with rasterio.open(tmp_path / "out" / "scene_classes.tif") as out:
        assert out.crs == rasterio.crs.CRS.from_string(CRS) and out.transform == TRANSFORM
        assert (out.width, out.height, out.count, out.dtypes[0], out.nodata) == (150, 110, 1, "uint8", 255)
        written = out.read(1)
        colormap = out.colormap(1)
    np.testing.assert_array_equal(written, classes.values)
    assert (written[:18, :26] == 255).all() and set(np.unique(written)) >= {0, 1, 2, 255}
    for value, color in backend.spec.class_colors.items():
        assert colormap[value][:3] == hex_to_rgb(color)
    with rasterio.open(tmp_path / "out" / "scene_confidence.tif") as out:
        assert out.transform == TRANSFORM and out.dtypes[0] == "float32"
        np.testing.assert_array_equal(out.read(1), confidence.values)


def read_outputs(folder) -> dict[str, tuple]:
    outputs = {}
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as out:
            outputs[path.name] = (
                out.read(),
                out.crs,
                out.transform,
                str(out.nodata),
                out.dtypes,
            )  # nan != nan
    return outputs


def test_two_workers_write_the_same_files_as_one(tmp_path, test_models):
    for index, (height, width) in enumerate([(70, 90), (100, 64), (81, 133)]):
        write_raster(tmp_path / f"r{index}.tif", scene(index + 1, height, width))
    pattern = str(tmp_path / "r*.tif")
    assert main([pattern, *predict_args(test_models["fcn_seg.onnx"], tmp_path / "one")]) == 0
    args = predict_args(test_models["fcn_seg.onnx"], tmp_path / "two", "--workers", "2", "--devices", "cpu")
    assert main([pattern, *args]) == 0

    one, two = read_outputs(tmp_path / "one"), read_outputs(tmp_path / "two")
    assert sorted(one) == [f"r{i}_{kind}.tif" for i in range(3) for kind in ("classes", "confidence")]
    assert sorted(two) == sorted(one)
    for name in one:
        (a, *meta_a), (b, *meta_b) = one[name], two[name]
        np.testing.assert_array_equal(a, b)
        assert meta_a == meta_b


def test_a_raster_that_fails_leaves_no_output_and_the_others_finish(tmp_path, test_models, capsys):
    write_raster(tmp_path / "good.tif", scene(4, 70, 70))
    write_raster(tmp_path / "two_bands.tif", scene(5, 70, 70)[:2])
    listing = tmp_path / "rasters.txt"
    listing.write_text("# inputs\ngood.tif\ntwo_bands.tif\n")
    output = tmp_path / "out"
    assert main(["--input-list", str(listing), *predict_args(test_models["fcn_seg.onnx"], output)]) == 1
    assert "two_bands.tif" in capsys.readouterr().err
    assert sorted(p.name for p in output.iterdir()) == [
        "good_classes.tif",
        "good_confidence.tif",
        "rsdl_manifest.json",
    ]
    assert leftover_temporaries(output) == []
    manifest = json.loads((output / "rsdl_manifest.json").read_text())
    assert list(manifest["rasters"]) == [str(tmp_path / "good.tif")]
    assert "the raster has bands 1 to 2" in manifest["failures"][str(tmp_path / "two_bands.tif")]["error"]


def test_rasters_of_one_name_in_different_folders_write_to_mirrored_folders(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_raster(tmp_path / folder / "tile.tif", scene(0, 8, 8))
    rasters = expand_inputs([str(tmp_path / "*" / "tile.tif")])
    folders = output_folders(rasters, tmp_path / "out")
    assert [folders[raster] for raster in rasters] == [tmp_path / "out" / "a", tmp_path / "out" / "b"]


def test_rasters_whose_outputs_would_still_collide_are_refused(tmp_path):
    write_raster(tmp_path / "tile.tif", scene(0, 8, 8))
    with rasterio.open(tmp_path / "tile.img", "w", driver="HFA", **_profile(8, 8)) as out:
        out.write(scene(1, 8, 8))
    rasters = expand_inputs([str(tmp_path / "tile.*")])
    with pytest.raises(Exception, match="share the folder and the name 'tile'"):
        output_folders(rasters, tmp_path / "out")


def _profile(height: int, width: int) -> dict:
    grid = {"count": 3, "height": height, "width": width, "dtype": "uint8"}
    return {**grid, "crs": CRS, "transform": TRANSFORM}
