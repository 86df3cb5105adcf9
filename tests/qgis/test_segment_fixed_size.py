"""rsdl:segment gives the same rasters with a model whose height and width are fixed at its tile
size as with the same net exported with a dynamic height and width: whether the fixed file comes
from the export's default or from ``--from-onnx`` on the dynamic file. And it refuses a TILE_SIZE
the fixed file cannot take, naming the model's size.

The models are exported by the training package in a subprocess: training is never imported in a
QGIS process (nothing in the plugin may import it, and its torch stays out of QGIS).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from tests.rasterize_cases import read_band

ALG = "rsdl:segment"
REPO = Path(__file__).resolve().parents[2]
TILE = 64

# A small encoder-decoder with random weights, shaped like the released U-Nets (pooling, then
# upsampling back, which exports as Resize), 3 classes by softmax; exported three ways.
_EXPORT_SCRIPT = """
import sys
from pathlib import Path

import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from training.export import export_onnx, main

folder, tile = Path(sys.argv[1]), int(sys.argv[2])


class EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.decode = nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.decode(self.encode(x)) * 4.0, dim=1)


torch.manual_seed(0)
net = EncoderDecoder().eval()
spec = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names={0: "background", 1: "building", 2: "road"},
    tile_size=tile,
    tiles_overlap_percent=25.0,
    standardization_mean=(0.5, 0.5, 0.5),
    standardization_std=(0.2, 0.2, 0.2),
    bands=(1, 2, 3),
    training={"output": "probabilities", "note": "random weights, a test model"},
)
export_onnx(net, spec, folder / "dynamic.onnx", dynamic_size=True)
export_onnx(net, spec, folder / "fixed.onnx")
sys.exit(main(["--from-onnx", str(folder / "dynamic.onnx"), "--output", str(folder / "from_onnx.onnx")]))
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """dynamic.onnx, fixed.onnx (the export's default) and from_onnx.onnx (dynamic.onnx fixed)."""
    folder = tmp_path_factory.mktemp("fixed_size_models")
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", _EXPORT_SCRIPT, str(folder), str(TILE)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return {name: folder / f"{name}.onnx" for name in ("dynamic", "fixed", "from_onnx")}


def input_shape(model: Path) -> list:
    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].shape


def kampala_tile(shared_data: Path) -> Path:
    """A real 256 x 256 RGB aerial tile (7.5 cm); the models carry no resolution: its own pixels."""
    return shared_data / "fair_kampala_buildings/tiles/OAM-1238448-1046529-21.tif"


@pytest.mark.parametrize("fixed", ["fixed", "from_onnx"])
def test_a_fixed_size_model_segments_as_the_dynamic_one(models, fixed, shared_data, run_algorithm, tmp_path):
    assert input_shape(models["dynamic"])[2:] == ["height", "width"]
    assert input_shape(models[fixed])[2:] == [TILE, TILE]  # not vacuous: the file is fixed
    raster = kampala_tile(shared_data)
    written = {}
    for name in ("dynamic", fixed):
        written[name] = (tmp_path / f"{name}_classes.tif", tmp_path / f"{name}_confidence.tif")
        result = run_algorithm(
            ALG,
            {
                "INPUT": str(raster),
                "MODEL": str(models[name]),
                "OUTPUT": str(written[name][0]),
                "CONFIDENCE": str(written[name][1]),
            },
        )
        assert result["TILES"] > 4  # several tiles, with seams and padded edges
    for dynamic, other in zip(written["dynamic"], written[fixed]):
        expected, got = read_band(dynamic), read_band(other)
        assert got.shape == expected.shape == (256, 256)
        np.testing.assert_array_equal(got, expected)
        assert gdal.Open(str(other)).GetGeoTransform() == gdal.Open(str(dynamic)).GetGeoTransform()
    assert len(np.unique(read_band(written[fixed][0]))) == 3  # every class occurs: not a blank map


def test_a_tile_size_the_fixed_model_cannot_take_is_refused(models, shared_data, run_algorithm, tmp_path):
    parameters = {
        "INPUT": str(kampala_tile(shared_data)),
        "MODEL": str(models["fixed"]),
        "TILE_SIZE": 2 * TILE,
        "OUTPUT": str(tmp_path / "classes.tif"),
    }
    message = rf"'fixed\.onnx' takes {TILE} x {TILE} pixel inputs; TILE_SIZE {2 * TILE} cannot be used"
    with pytest.raises(QgsProcessingException, match=message):
        run_algorithm(ALG, parameters)
    assert not (tmp_path / "classes.tif").exists()
    run_algorithm(ALG, {**parameters, "TILE_SIZE": TILE})  # its own size is taken
    assert (tmp_path / "classes.tif").exists()
