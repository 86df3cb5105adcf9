"""The released models in models/, run through qgis_process as an analyst would, and the input shape
every released file must have."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from osgeo import gdal

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from tests.classify_cases import read_features
from tests.rasterize_cases import gdal_rasterize_oracle, read_band

pytestmark = pytest.mark.qgis_process
RELEASED = sorted((Path(__file__).resolve().parents[2] / "models").glob("*/model.onnx"))
ABER_MIN_IOU = 0.9  # measured 0.995-1.000
KAMPALA_MIN_ACCURACY = 0.8


def test_buildings_kampala_finds_the_buildings(qgis_process, repo_root, shared_data, tmp_path):
    labels = shared_data / "fair_kampala_buildings/buildings.geojson"
    tiles = [
        shared_data / "fair_kampala_buildings/tiles" / name
        for name in ("OAM-1238448-1046529-21.tif", "OAM-1238449-1046530-21.tif", "OAM-1238450-1046531-21.tif")
    ]
    intersection = union = 0
    for number, tile in enumerate(tiles):
        output = tmp_path / f"buildings_{number}.tif"
        result = qgis_process.run_algorithm(
            "rsdl:segment",
            {
                "INPUT": str(tile),
                "MODEL": str(repo_root / "models/buildings_kampala/model.onnx"),
                "OUTPUT": str(output),
            },
        )
        assert result["results"]["TILES"] > 0
        predicted = read_band(output) == 1
        expected = gdal_rasterize_oracle(labels, tile, 1).astype(bool)
        assert predicted.shape == expected.shape  # the tiles are at the model's 7.46 cm already
        intersection += int((predicted & expected).sum())
        union += int((predicted | expected).sum())
    # These tiles include training ground: a smoke test that the released file works end to end
    # (the card's held-out figure is 0.80), not a measurement.
    assert intersection / union > 0.6


def test_landcover_aber_s2_maps_the_sample_polygons(qgis_process, repo_root, shared_data, tmp_path):
    aber = shared_data / "rsgislib_aber_s2"
    classes = tmp_path / "landcover.tif"
    qgis_process.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(aber / "sen2_20210527_aber_mosaic.vrt"),
            "MODEL": str(repo_root / "models/landcover_aber_s2/model.onnx"),
            "OUTPUT": str(classes),
        },
    )
    assert read_band(classes).shape == (947, 931)  # the mosaic's own 10 m grid
    evaluation = qgis_process.run_algorithm(
        "rsdl:evaluate",
        {
            "PREDICTION": str(classes),
            "LABELS": str(aber / "aber_landcover_4class_polygons.gpkg"),
            "FIELD": "class_id",
            "NAME_FIELD": "class_name",
            "UNLABELLED": 1,  # outside the sample polygons is unknown, not background
        },
    )
    metrics = json.loads(evaluation["results"]["METRICS"])
    iou = {row["name"]: row["iou"] for row in metrics["classes"]}
    assert set(iou) == {"Forest", "Grass", "Urban", "Water"}
    # Most polygons were training ground for the released fold: a smoke test that the file, its
    # band order and its normalisation work through QGIS (the card's figures are cross-validated).
    assert min(iou.values()) > ABER_MIN_IOU, iou


def test_kampala_classifier_tells_buildings_from_background(qgis_process, repo_root, shared_data, tmp_path):
    kampala = shared_data / "fair_kampala_buildings"
    mosaic = tmp_path / "kampala_z21.vrt"
    vrt = gdal.BuildVRT(str(mosaic), sorted(str(p) for p in (kampala / "tiles").glob("OAM-*-21.tif")))
    del vrt  # GDAL writes the VRT file when the dataset is released
    output = tmp_path / "tiles.gpkg"
    qgis_process.run_algorithm(
        "rsdl:classifytiles",
        {
            "INPUT": str(mosaic),
            "MODEL": str(repo_root / "models/kampala_classifier/model.onnx"),
            "TILE_SIZE": 128,
            "OUTPUT": str(output),
        },
    )
    buildings = gdal_rasterize_oracle(kampala / "buildings.geojson", mosaic, 1).astype(bool)
    left, pixel, _, top, _, _ = gdal.Open(str(mosaic)).GetGeoTransform()
    right = wrong = 0
    for feature in read_features(output):
        xmin, _, _, ymax = feature["geometry"].GetEnvelope()
        row, col = round((top - ymax) / pixel), round((xmin - left) / pixel)
        cover = buildings[row : row + 128, col : col + 128].mean()
        if 0.0 < cover < 0.15:
            continue  # neither class by the chip export's rule (MIN_COVER 0.15)
        expected = "buildings" if cover >= 0.15 else "background"
        right, wrong = (
            right + (feature["class_name"] == expected),
            wrong + (feature["class_name"] != expected),
        )
    assert right + wrong > 200
    # The tiles cover training ground too: a smoke test, not the card's held-out measurement.
    assert right / (right + wrong) > KAMPALA_MIN_ACCURACY


def test_sample_scene_landcover_on_the_held_out_scene(qgis_process, repo_root, sample_scene, tmp_path):
    """The demo's model on the seed-0 scene it never saw, scored against GDAL's own rasterization."""
    output = tmp_path / "classes.tif"
    result = qgis_process.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(repo_root / "models/sample_scene_landcover/model.onnx"),
            "OUTPUT": str(output),
        },
    )
    assert result["results"]["TILES"] > 0
    predicted = read_band(output)
    # measured at 512 px: building 0.84, vegetation 0.95, water 0.96 (against rsdl's own mask)
    for value, name, minimum in ((1, "building", 0.7), (3, "vegetation", 0.85), (4, "water", 0.85)):
        expected = gdal_rasterize_oracle(
            sample_scene / "labels.gpkg", output, 1, layer="landcover", where=f"class_name = '{name}'"
        ).astype(bool)
        found = predicted == value
        iou = (found & expected).sum() / (found | expected).sum()
        assert iou > minimum, (name, iou)


@pytest.mark.parametrize("model", RELEASED, ids=[path.parent.name for path in RELEASED])
def test_every_released_model_has_a_fixed_input_of_its_tile_size(model):
    """Integer height and width equal to the spec's tile size: Deepness's dock widget takes the tile
    size from the input shape (``input_0_shape[-1]``) and cannot load a model whose height and width
    are names ('Failed to load the model!'). Export fixes them by default; ``python -m training export
    --from-onnx`` fixes a file exported dynamic."""
    loaded = onnx.load(str(model), load_external_data=False)
    spec = ModelSpec.from_metadata({prop.key: prop.value for prop in loaded.metadata_props})
    if spec.model_type in (ModelType.DETECTOR, ModelType.INSTANCE_SEGMENTOR):
        pytest.skip(
            "rsdl's detection layout: Deepness's dock widget cannot load it at any input size, and "
            "rsdl:detect uses the dynamic size (other tile sizes, a whole image in one pass)"
        )
    weights = {tensor.name for tensor in loaded.graph.initializer}
    (image,) = [value for value in loaded.graph.input if value.name not in weights]
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in image.type.tensor_type.shape.dim]
    assert spec.tile_size, f"{model} has no tile_size in its spec"
    assert dims[2:] == [spec.tile_size, spec.tile_size], (
        f"{model.parent.name}: input {dims}, tile_size {spec.tile_size}; fix it with python -m training "
        f"export --from-onnx {model.relative_to(model.parents[2])} --output ..."
    )


@pytest.mark.parametrize("model", RELEASED, ids=[path.parent.name for path in RELEASED])
def test_a_model_fine_tuned_from_licensed_weights_ships_their_licence(model):
    """Apache-2.0 (the bundled ImageNet EfficientNet-Lite weights) asks that a redistributed
    derivative carry the licence and the copyright notices: a released model whose spec names such
    weights holds WEIGHTS_LICENSE.txt (notices, then the licence text) and its card says so."""
    loaded = onnx.load(str(model), load_external_data=False)
    spec = ModelSpec.from_metadata({prop.key: prop.value for prop in loaded.metadata_props})
    pretrained = spec.training.get("pretrained") or {}
    card = (model.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    licence_file = model.parent / "WEIGHTS_LICENSE.txt"
    if not pretrained.get("licence"):
        assert not licence_file.exists(), f"{model.parent.name}: a licence file but no pretrained weights"
        return
    assert pretrained["licence"] == "Apache-2.0", pretrained
    text = licence_file.read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "Copyright" in text and pretrained["source"] in text
    assert "WEIGHTS_LICENSE.txt" in card and "Apache-2.0" in card
