"""rsdl:classifytiles and rsdl:classifyfeatures in QGIS (pytest-qgis) on a scene of known colours."""

from __future__ import annotations

import pytest
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsVectorLayer,
)

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.processing_provider.classify_features import ClassifyFeaturesAlgorithm
from rsdl_qgis_plugin.processing_provider.classify_tiles import ClassifyTilesAlgorithm
from rsdl_qgis_plugin.processing_provider.layer_styling import ClassVectorStyler
from tests.cancel_feedback import CancelAt
from tests.classify_cases import (
    EXPECTED_CLASS,
    EXTENT_AREA,
    HEIGHT,
    PATTERN,
    WIDTH,
    X0,
    Y0,
    block_colour,
    expected_grid_count,
    read_features,
    union_area,
    write_footprints,
    write_scene,
)

TILES = "rsdl:classifytiles"
FEATURES = "rsdl:classifyfeatures"


@pytest.fixture()
def scene(tmp_path):
    return write_scene(tmp_path / "scene.tif")


def _tile_colour(feature) -> str:
    envelope = feature["geometry"].GetEnvelope()  # (xmin, xmax, ymin, ymax)
    return block_colour((envelope[0] + envelope[1]) / 2, (envelope[2] + envelope[3]) / 2)


def test_tiles_take_the_class_of_their_colour_and_tile_the_extent(
    scene, test_models, run_algorithm, tmp_path
):
    output = tmp_path / "tiles.gpkg"
    result = run_algorithm(
        TILES,
        {
            "INPUT": str(scene),
            "MODEL": str(test_models["classifier.onnx"]),
            "MIN_PROBABILITY": 0.9,
            "BATCH_SIZE": 5,
            "OUTPUT": str(output),
        },
    )
    features = read_features(output)
    # 1 m model resolution: 125 x 90 px, so 4 x 3 tiles of 32 px, one per colour block.
    assert len(features) == result["TILES"] == 4 * 3 == len(PATTERN) * len(PATTERN[0])
    assert union_area(features) == pytest.approx(EXTENT_AREA)
    assert sum(f["geometry"].GetArea() for f in features) == pytest.approx(EXTENT_AREA)
    for feature in features:
        colour = _tile_colour(feature)
        if colour == "purple":  # as red as blue: below MIN_PROBABILITY, so no class
            assert feature["class_id"] is None and feature["class_name"] is None
            assert 0.3 < feature["probability"] < 0.9
        else:
            assert feature["class_name"] == EXPECTED_CLASS[colour]
            assert feature["class_id"] == {"intact": 0, "damaged": 1}[feature["class_name"]]
            assert feature["probability"] > 0.99
        assert feature["p_intact"] + feature["p_damaged"] == pytest.approx(1.0, abs=1e-5)


def test_native_pixels_with_overlapping_stride(scene, test_models, run_algorithm, tmp_path):
    output = tmp_path / "native.gpkg"
    run_algorithm(
        TILES,
        {
            "INPUT": str(scene),
            "MODEL": str(test_models["classifier.onnx"]),
            "RESAMPLE": False,
            "STRIDE": 24,
            "OUTPUT": str(output),
        },
    )
    features = read_features(output)
    assert len(features) == expected_grid_count(WIDTH, 32, 24) * expected_grid_count(HEIGHT, 32, 24)
    assert union_area(features) == pytest.approx(EXTENT_AREA)
    one_colour = 0
    for feature in features:
        xmin, xmax, ymin, ymax = feature["geometry"].GetEnvelope()
        corners = {block_colour(x, y) for x in (xmin + 0.1, xmax - 0.1) for y in (ymin + 0.1, ymax - 0.1)}
        if len(corners) == 1 and corners != {"purple"}:
            one_colour += 1
            assert feature["class_name"] == EXPECTED_CLASS[corners.pop()]
    assert one_colour > 20


def test_extent_and_nodata_tiles(tmp_path, test_models, run_algorithm):
    scene = write_scene(tmp_path / "holes.tif", nodata_block=(0, 1))
    output = tmp_path / "extent.gpkg"
    extent = f"{X0 + 10},{X0 + 70},{Y0 - 62},{Y0 - 2} [EPSG:32633]"
    common = {"INPUT": str(scene), "MODEL": str(test_models["classifier.onnx"])}
    result = run_algorithm(TILES, {**common, "EXTENT": extent, "OUTPUT": str(output)})
    features = read_features(output)
    # 60 m x 60 m at 1 m from the extent's corner: 2 x 2 tiles. The top-right one (28 x 32 m
    # inside the extent) lies three quarters over the nodata block: skipped.
    assert (result["TILES"], result["SKIPPED"]) == (3, 1)
    assert union_area(features) == pytest.approx(60 * 60 - 28 * 32)
    whole = run_algorithm(TILES, {**common, "OUTPUT": str(tmp_path / "skip.gpkg")})
    assert (whole["TILES"], whole["SKIPPED"]) == (11, 1)
    kept = run_algorithm(TILES, {**common, "SKIP_NODATA": False, "OUTPUT": str(tmp_path / "all.gpkg")})
    assert (kept["TILES"], kept["SKIPPED"]) == (12, 0)


def test_features_take_the_class_of_the_colour_under_them(scene, test_models, run_algorithm, tmp_path):
    footprints = tmp_path / "footprints.gpkg"
    expected = write_footprints(footprints)
    output = tmp_path / "classified.gpkg"
    feedback = QgsProcessingFeedback()
    result = run_algorithm(
        FEATURES,
        {
            "INPUT": str(footprints),
            "RASTER": str(scene),
            "MODEL": str(test_models["classifier.onnx"]),
            "BATCH_SIZE": 3,
            "OUTPUT": str(output),
        },
        feedback,
    )
    source = {f["name"]: f for f in read_features(footprints)}
    features = {f["name"]: f for f in read_features(output)}
    assert set(features) == set(expected) == set(source)
    assert result["CLASSIFIED"] == sum(v is not None for v in expected.values())
    assert result["NOT_CLASSIFIED"] == 3
    for name, feature in features.items():
        original = source[name]
        for field in ("floors", "area_m2", "class_name"):  # the input's own fields, unchanged
            assert feature[field] == original[field]
        assert feature["class_name_2"] == expected[name], name  # ours, renamed beside the input's
        if expected[name] is not None:
            assert feature["probability"] > 0.99
            assert feature["geometry"].Equals(original["geometry"])
        else:
            assert feature["class_id"] is None and feature["p_damaged"] is None
    log = feedback.textLog()
    assert "1 feature(s) outside the raster" in log
    assert "2 feature(s) with no usable geometry" in log


def _refused(run_algorithm, algorithm, parameters, tmp_path, message, feedback=None):
    output = tmp_path / "refused.gpkg"
    with pytest.raises(QgsProcessingException, match=message):
        run_algorithm(algorithm, {**parameters, "OUTPUT": str(output)}, feedback)
    assert not output.exists()
    assert leftover_temporaries(tmp_path) == []


def test_segmentation_models_are_refused(scene, test_models, shared_data, run_algorithm, tmp_path):
    footprints = tmp_path / "footprints.gpkg"
    write_footprints(footprints)
    deepness = shared_data / "deepness_peer/models/dummy_segmentation_models/dummy_model.onnx"
    for model in (test_models["fcn_seg.onnx"], deepness):
        _refused(run_algorithm, TILES, {"INPUT": str(scene), "MODEL": str(model)}, tmp_path, "rsdl:segment")
        _refused(
            run_algorithm,
            FEATURES,
            {"INPUT": str(footprints), "RASTER": str(scene), "MODEL": str(model)},
            tmp_path,
            "rsdl:segment",
        )


@pytest.mark.parametrize("percent", [10, 80])
def test_cancel_leaves_no_output(percent, scene, test_models, run_algorithm, tmp_path):
    footprints = tmp_path / "footprints.gpkg"
    write_footprints(footprints)
    model = str(test_models["classifier.onnx"])
    common = {"MODEL": model, "BATCH_SIZE": 2}
    _refused(run_algorithm, TILES, {**common, "INPUT": str(scene)}, tmp_path, "(?i)cancel", CancelAt(percent))
    _refused(
        run_algorithm,
        FEATURES,
        {**common, "INPUT": str(footprints), "RASTER": str(scene)},
        tmp_path,
        "(?i)cancel",
        CancelAt(percent),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["footprints.gpkg", "scene.tif"]


@pytest.mark.parametrize("algorithm", [ClassifyTilesAlgorithm, ClassifyFeaturesAlgorithm])
def test_every_parameter_has_help(algorithm, qgis_app):
    instance = algorithm()
    instance.initAlgorithm()
    for parameter in instance.parameterDefinitions():
        assert len(parameter.help()) > 20, parameter.name()
        assert f"<code>{parameter.name()}</code>" in instance.shortHelpString()


def test_loaded_output_is_styled_in_the_model_colours(scene, test_models, rsdl_provider, tmp_path):
    output = tmp_path / "tiles.gpkg"
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(TILES)
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    destination = QgsProcessingOutputLayerDefinition(str(output), QgsProject.instance())
    parameters = {"INPUT": str(scene), "MODEL": str(test_models["classifier.onnx"]), "OUTPUT": destination}
    results, ok = algorithm.run(parameters, context, feedback)
    assert ok, feedback.textLog()
    styler = context.layerToLoadOnCompletionDetails(results["OUTPUT"]).postProcessor()
    assert isinstance(styler, ClassVectorStyler)
    layer = QgsVectorLayer(str(output), "tiles", "ogr")
    styler.postProcessLayer(layer, context, feedback)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == "class_name"
    colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    assert colours["intact"] == "#1f78b4" and colours["damaged"] == "#e31a1c"  # the model's spec
    assert len(colours) == 3  # and one for tiles without a class
