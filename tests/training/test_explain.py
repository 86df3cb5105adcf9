"""explain: Integrated Gradients on a net whose exact attributions are known (a 1x1 convolution:
IG of a linear function is (x - baseline) * weight), written as a GeoTIFF on the window's grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from training.explain import explain_raster, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPEC = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names={0: "background", 1: "building"},
    standardization_mean=(0.4, 0.5, 0.6),
    standardization_std=(0.2, 0.25, 0.3),
    bands=(1, 2, 3),
)
WINDOW = (8, 4, 30, 24)  # col, row, width, height
TARGET_WINDOW = (5, 6, 10, 8)
NODATA_PIXEL = (10, 20)  # (row, col) inside WINDOW's target window, in raster pixels


def linear_net() -> nn.Module:
    """building = 2 * band 1 + 1; background = band 3: only band 1 drives the target class."""
    net = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[0, 2] = 1.0
        net.weight[1, 0] = 2.0
        net.bias.copy_(torch.tensor([0.0, 1.0]))
    return net


@pytest.fixture
def raster(tmp_path):
    data = np.random.default_rng(0).integers(1, 256, (3, 40, 50)).astype(np.uint8)
    data[:, NODATA_PIXEL[0], NODATA_PIXEL[1]] = 0
    path = tmp_path / "scene.tif"
    profile = {"driver": "GTiff", "count": 3, "height": 40, "width": 50, "dtype": "uint8", "nodata": 0}
    with rasterio.open(
        path, "w", **profile, crs="EPSG:32633", transform=from_origin(400000, 5000000, 2, 2)
    ) as out:
        out.write(data)
    return path, data


def test_segmentation_attributions_are_exact_and_georeferenced(tmp_path, raster):
    path, data = raster
    output = tmp_path / "explain"
    report = explain_raster(
        linear_net(), SPEC, path, output, "building", WINDOW, TARGET_WINDOW, steps=16, baseline="mean"
    )

    col, row, width, height = WINDOW
    normalised = SPEC.normalize(data[:, row : row + height, col : col + width])
    expected = np.zeros_like(normalised)
    tcol, trow, twidth, theight = TARGET_WINDOW
    inside = (slice(trow, trow + theight), slice(tcol, tcol + twidth))
    expected[0][inside] = 2.0 * normalised[0][inside]  # (x - 0) * d(sum of logits)/dx

    with rasterio.open(path) as source, rasterio.open(output / "attribution.tif") as tif:
        assert tif.crs == source.crs
        assert tif.transform == source.window_transform(Window(*WINDOW))
        assert (tif.count, tif.width, tif.height, tif.dtypes[0]) == (4, width, height, "float32")
        assert tif.descriptions[0].startswith("attribution (sum") and "input band 1" in tif.descriptions[1]
        written = tif.read()
    nodata = (NODATA_PIXEL[0] - row, NODATA_PIXEL[1] - col)
    assert np.isnan(written[:, nodata[0], nodata[1]]).all()
    written[:, nodata[0], nodata[1]] = (
        expected[:, nodata[0], nodata[1]].sum(),
        *expected[:, nodata[0], nodata[1]],
    )
    np.testing.assert_allclose(written[1:], expected, atol=1e-4)
    np.testing.assert_allclose(written[0], expected.sum(axis=0), atol=1e-4)
    assert np.abs(written[1][inside]).min() > 0.1  # driven pixels carry attribution; the rest is 0

    assert abs(report["convergence_delta"]) < 1e-3
    assert report["score"] - report["baseline_score"] == pytest.approx(float(expected.sum()), rel=1e-4)
    assert json.loads((output / "explanation.json").read_text())["target"] == {"value": 1, "name": "building"}
    png = (output / "attribution.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10000


class MeanClassifier(nn.Module):
    """damaged - intact = mean red - mean blue."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3))
        return torch.stack([means[:, 2], means[:, 0]], dim=1)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_classifier_explanation_of_a_photo_is_complete_and_not_georeferenced(tmp_path):
    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 256, (3, 40, 48)).astype(np.uint8)
    with rasterio.open(photo, "w", driver="PNG", count=3, height=40, width=48, dtype="uint8") as out:
        out.write(pixels)
    spec = ModelSpec(
        model_type=ModelType.CLASSIFIER,
        class_names={0: "intact", 1: "damaged"},
        tile_size=32,
        bands=(1, 2, 3),
    )

    report = explain_raster(MeanClassifier(), spec, photo, tmp_path / "out", "damaged", steps=8)

    # Completeness of IG: the attributions add up to F(x) - F(baseline).
    assert abs(report["convergence_delta"]) < 1e-4
    assert report["files"] == ["attribution.png"]  # no CRS: no GeoTIFF


def test_main_explains_a_window_and_refuses_one_outside_the_raster(tmp_path, raster, monkeypatch, capsys):
    monkeypatch.setattr("training.checkpoints.load_checkpoint_net", lambda path: (linear_net(), SPEC))
    path, _ = raster
    common = [
        "--checkpoint",
        "best.ckpt",
        "--input",
        str(path),
        "--target",
        "1",
        "--steps",
        "4",
        "--device",
        "cpu",
    ]
    assert main([*common, "--output", str(tmp_path / "ok"), "--window", "0,0,20,20"]) == 0
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == [
        "attribution.png",
        "attribution.tif",
        "explanation.json",
    ]
    assert main([*common, "--output", str(tmp_path / "bad"), "--window", "40,30,20,20"]) == 1
    assert "does not lie inside the 50 x 40 px raster" in capsys.readouterr().err
