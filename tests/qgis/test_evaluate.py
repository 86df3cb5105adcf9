"""rsdl:evaluate in QGIS: a real classifier output against real reference masks, a synthetic
case with a known confusion matrix, vector labels against the equivalent mask, classes matched
by name, grids refused, ignore/nodata left out and outputs complete or absent."""

from __future__ import annotations

import csv
import errno
import json
import shutil

import numpy as np
import pytest
from osgeo import gdal, osr
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingOutputHtml

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.qgis_io import class_pairs
from rsdl_qgis_plugin.qgis_io.raster_description import apply_description, class_raster_description
from tests.log_feedback import LogFeedback
from tests.rasterize_cases import gdal_rasterize_oracle

ALG = "rsdl:evaluate"
ABER = "rsgislib_aber_s2"
# The scene classifier's output (NOT ground truth): values 1-4 named Forest, Grass, Urban, Water in
# its raster attribute table (.aux.xml), no nodata. The reference mask merges the source
# project's per-class masks: the same values 1-4 (class_id of the polygons), 0 = unlabelled
# (nodata). So values mean the same classes in both and are compared as they are.
ABER_NAMES = ["Forest", "Grass", "Urban", "Water"]
MODEL_CLASSES = [
    LabelClass(0, "background", "#000000"),
    LabelClass(1, "building", "#ff0000"),
    LabelClass(2, "water", "#0000ff"),
]


def _read(path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def _oracle_matrix(reference: np.ndarray, prediction: np.ndarray, values: list[int]) -> np.ndarray:
    """Pixel by pixel, in plain Python: the test's own count, independent of the plugin."""
    index = {value: i for i, value in enumerate(values)}
    matrix = np.zeros((len(values), len(values)), dtype=np.int64)
    for truth, predicted in zip(reference.tolist(), prediction.tolist()):
        matrix[index[truth], index[predicted]] += 1
    return matrix


def _write(
    path, array: np.ndarray, nodata: int | None, classes: list[LabelClass] | None = None, like=None
) -> str:
    """A Byte GeoTIFF (on the grid of raster ``like`` when given), with rsdl class metadata when
    ``classes`` are given."""
    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(str(path), array.shape[1], array.shape[0], 1, gdal.GDT_Byte)
    if like is not None:
        template = gdal.Open(str(like))
        dataset.SetGeoTransform(template.GetGeoTransform())
        dataset.SetProjection(template.GetProjection())
        template = None
    else:
        dataset.SetGeoTransform((500000.0, 1.0, 0.0, 40000.0, 0.0, -1.0))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32636)
        dataset.SetProjection(srs.ExportToWkt())
    if classes is not None:
        values = MaskValues(background_value=nodata, ignore_value=nodata, unlabelled_is_ignore=True)
        apply_description(dataset, class_raster_description(classes, values))
    elif nodata is not None:
        dataset.GetRasterBand(1).SetNoDataValue(nodata)
    dataset.GetRasterBand(1).WriteArray(array)
    dataset = None
    return str(path)


def test_classifier_output_against_the_reference_mask(shared_data, run_algorithm, tmp_path):
    prediction = shared_data / ABER / "sen2_20210527_aber_cls.tif"
    reference = shared_data / ABER / "aber_landcover_4class_refmask.tif"
    outputs = {
        "OUTPUT_HTML": tmp_path / "report.html",
        "OUTPUT_CSV": tmp_path / "classes.csv",
        "CONFUSION_PNG": tmp_path / "confusion.png",
    }
    result = run_algorithm(
        ALG,
        {
            "PREDICTION": str(prediction),
            "REFERENCE": str(reference),
            **{k: str(v) for k, v in outputs.items()},
        },
    )
    truth, predicted = _read(reference).ravel(), _read(prediction).ravel()
    labelled = truth != 0  # the mask's nodata: unlabelled
    expected = _oracle_matrix(truth[labelled], predicted[labelled], [1, 2, 3, 4])
    metrics = json.loads(result["METRICS"])
    assert np.array_equal(np.array(metrics["confusion_matrix"]["values"]), expected)
    assert metrics["confusion_matrix"]["classes"] == ABER_NAMES  # from the .aux.xml attribute table
    assert metrics["labelled"] == int(labelled.sum()) and metrics["excluded"] == int((~labelled).sum())

    total = expected.sum()
    overall = np.trace(expected) / total
    chance = (expected.sum(axis=1) * expected.sum(axis=0)).sum() / total**2
    iou = [expected[i, i] / (expected[i].sum() + expected[:, i].sum() - expected[i, i]) for i in range(4)]
    assert result["OVERALL_ACCURACY"] == pytest.approx(overall)
    assert result["KAPPA"] == pytest.approx((overall - chance) / (1 - chance))
    assert result["MEAN_IOU"] == pytest.approx(np.mean(iou))
    assert 0.9 < result["OVERALL_ACCURACY"] <= 1.0  # the classifier was trained on these samples

    rows = list(csv.DictReader(outputs["OUTPUT_CSV"].open()))
    assert [row["name"] for row in rows] == ABER_NAMES
    assert [float(row["iou"]) for row in rows] == pytest.approx(iou, abs=1e-6)
    page = outputs["OUTPUT_HTML"].read_text()
    assert "data:image/png;base64," in page and all(name in page for name in ABER_NAMES)
    assert outputs["CONFUSION_PNG"].read_bytes().startswith(b"\x89PNG")
    assert result["OUTPUT_HTML"] == str(outputs["OUTPUT_HTML"])
    algorithm = QgsApplication.processingRegistry().algorithmById(ALG)
    assert isinstance(algorithm.outputDefinition("OUTPUT_HTML"), QgsProcessingOutputHtml)  # results viewer
    assert leftover_temporaries(tmp_path) == []


def test_vector_labels_give_the_numbers_of_the_equivalent_mask(shared_data, run_algorithm, tmp_path):
    prediction = str(shared_data / ABER / "sen2_20210527_aber_cls.tif")
    from_mask = run_algorithm(
        ALG,
        {
            "PREDICTION": prediction,
            "REFERENCE": str(shared_data / ABER / "aber_landcover_4class_refmask.tif"),
            "OUTPUT_HTML": str(tmp_path / "mask.html"),
        },
    )
    from_vectors = run_algorithm(
        ALG,
        {
            "PREDICTION": prediction,
            "LABELS": [str(shared_data / ABER / "aber_landcover_4class_polygons.gpkg")],
            "FIELD": "class_id",
            "NAME_FIELD": "class_name",
            "UNLABELLED": 1,  # sparse samples: unlabelled area is not scored
            "OUTPUT_HTML": str(tmp_path / "vectors.html"),
        },
    )
    mask_metrics, vector_metrics = json.loads(from_mask["METRICS"]), json.loads(from_vectors["METRICS"])
    assert vector_metrics["class_matching"] == "by name"  # Forest..Water on both sides
    for key in ("classes", "overall_accuracy", "kappa", "mean_iou", "labelled", "excluded"):
        assert vector_metrics[key] == mask_metrics[key], key
    assert vector_metrics["confusion_matrix"]["values"] == mask_metrics["confusion_matrix"]["values"]


def test_known_confusion_matrix_streamed_in_blocks(run_algorithm, tmp_path, monkeypatch):
    known = np.array([[5, 1, 0], [2, 7, 3], [0, 4, 8]])
    truth = [t for (t, p), n in np.ndenumerate(known) for _ in range(n)]
    predicted = [p for (t, p), n in np.ndenumerate(known) for _ in range(n)]
    # 6 reference ignore (nodata 9) and 4 prediction nodata (255) pixels, never scored
    truth += [9] * 6 + [1] * 4
    predicted += [2] * 6 + [255] * 4
    order = np.random.default_rng(0).permutation(len(truth))
    reference = np.array(truth, dtype=np.uint8)[order].reshape(5, 8)
    prediction = np.array(predicted, dtype=np.uint8)[order].reshape(5, 8)
    monkeypatch.setattr(class_pairs, "BLOCK_PIXELS", 8)  # one row per block: five blocks
    result = run_algorithm(
        ALG,
        {
            "PREDICTION": _write(tmp_path / "prediction.tif", prediction, 255, MODEL_CLASSES),
            "REFERENCE": _write(tmp_path / "reference.tif", reference, 9),
            "OUTPUT_HTML": str(tmp_path / "report.html"),
        },
    )
    metrics = json.loads(result["METRICS"])
    assert metrics["confusion_matrix"]["values"] == known.tolist()
    assert metrics["labelled"] == 30 and metrics["excluded"] == 10
    assert [row["name"] for row in metrics["classes"]] == ["background", "building", "water"]
    assert result["OVERALL_ACCURACY"] == pytest.approx(20 / 30)
    chance = (6 * 7 + 12 * 12 + 12 * 11) / 900
    assert result["KAPPA"] == pytest.approx((20 / 30 - chance) / (1 - chance))
    water = metrics["classes"][2]
    assert (water["precision"], water["recall"]) == (pytest.approx(8 / 11), pytest.approx(8 / 12))


def _landcover_and_model(sample_scene, run_algorithm, tmp_path) -> tuple[str, object, str]:
    """The sample scene's landcover labels (text field: building 1, vegetation 2, water 3), their
    mask, and a model's class raster (background 0, building 1, water 2) that is perfect for
    building and water and blind to vegetation (predicted as background)."""
    labels = f"{sample_scene / 'labels.gpkg'}|layername=landcover"
    mask = tmp_path / "labels.tif"
    run_algorithm(
        "rsdl:rasterizelabels",
        {
            "INPUT": [labels],
            "FIELD": "class_name",
            "REFERENCE": str(sample_scene / "scene.tif"),
            "OUTPUT": str(mask),
        },
    )
    reference = _read(mask)
    assert set(np.unique(reference)) <= {0, 1, 2, 3}
    model_values = np.array([0, 1, 0, 2], dtype=np.uint8)[reference]
    return labels, mask, _write(tmp_path / "model.tif", model_values, 255, MODEL_CLASSES, like=mask)


def test_classes_matched_by_name(sample_scene, run_algorithm, tmp_path):
    """Labels from a text field number classes alphabetically (building 1, vegetation 2, water 3);
    a model numbers them its own way (background 0, building 1, water 2)."""
    labels, mask, prediction = _landcover_and_model(sample_scene, run_algorithm, tmp_path)

    for parameters in ({"REFERENCE": str(mask)}, {"LABELS": [labels], "FIELD": "class_name"}):
        result = run_algorithm(
            ALG, {"PREDICTION": prediction, **parameters, "OUTPUT_HTML": str(tmp_path / "r.html")}
        )
        metrics = json.loads(result["METRICS"])
        rows = {row["name"]: row for row in metrics["classes"]}
        assert metrics["class_matching"] == "by name"
        assert rows["building"]["iou"] == 1.0 and rows["water"]["iou"] == 1.0
        assert rows["vegetation"]["recall"] == 0.0 and rows["vegetation"]["predicted"] == 0
        assert rows["background"]["recall"] == 1.0 and rows["background"]["precision"] < 1.0

    by_value = run_algorithm(
        ALG,
        {
            "PREDICTION": prediction,
            "REFERENCE": str(mask),
            "CLASS_MATCHING": 1,
            "OUTPUT_HTML": str(tmp_path / "v.html"),
        },
    )
    assert by_value["MEAN_IOU"] < result["MEAN_IOU"]  # water 3 against water 2: all wrong


def test_reference_on_another_grid_is_refused(shared_data, run_algorithm, tmp_path):
    with pytest.raises(QgsProcessingException, match="is not on the grid of"):
        run_algorithm(
            ALG,
            {
                "PREDICTION": str(shared_data / ABER / "sen2_20210527_aber_cls.tif"),
                "REFERENCE": str(shared_data / ABER / "sen2_20210527_aber_subset.tif"),  # shifted grid
                "OUTPUT_HTML": str(tmp_path / "never.html"),
            },
        )
    assert not (tmp_path / "never.html").exists()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "exactly one of the two"),
        ({"PREDICTION": "scene"}, "holds|bands"),
    ],
)
def test_bad_inputs_are_explained(shared_data, sample_scene, run_algorithm, tmp_path, parameters, message):
    base = {
        "PREDICTION": str(shared_data / ABER / "sen2_20210527_aber_cls.tif"),
        "OUTPUT_HTML": str(tmp_path / "never.html"),
    }
    if parameters.get("PREDICTION") == "scene":  # an RGB image is no class raster
        base.update(PREDICTION=str(sample_scene / "scene.tif"), LABELS=[str(sample_scene / "labels.gpkg")])
    with pytest.raises(QgsProcessingException, match=message):
        run_algorithm(ALG, base)


def test_outputs_appear_together_or_not_at_all(shared_data, run_algorithm, tmp_path, monkeypatch):
    from rsdl_qgis_plugin.processing_provider import evaluate

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate, "metrics_html", disk_full)
    with pytest.raises(QgsProcessingException, match="disk is full"):
        run_algorithm(
            ALG,
            {
                "PREDICTION": str(shared_data / ABER / "sen2_20210527_aber_cls.tif"),
                "REFERENCE": str(shared_data / ABER / "aber_landcover_4class_refmask.tif"),
                "OUTPUT_HTML": str(tmp_path / "report.html"),
                "OUTPUT_CSV": str(tmp_path / "classes.csv"),
                "CONFUSION_PNG": str(tmp_path / "confusion.png"),
            },
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


KAMPALA_TILES = [f"OAM-{x}-{y}-21.tif" for x in (1238448, 1238449, 1238450) for y in (1046529, 1046530)]


@pytest.fixture(scope="module")
def kampala_prediction(shared_data, repo_root, run_processing, tmp_path_factory):
    """models/buildings_kampala's class raster on six neighbouring 256 px tiles of the real data."""
    folder = tmp_path_factory.mktemp("kampala")
    tiles = [str(shared_data / "fair_kampala_buildings/tiles" / name) for name in KAMPALA_TILES]
    gdal.BuildVRT(str(folder / "kampala.vrt"), tiles).FlushCache()
    classes = folder / "classes.tif"
    run_processing(
        "rsdl:segment",
        {
            "INPUT": str(folder / "kampala.vrt"),
            "MODEL": str(repo_root / "models/buildings_kampala/model.onnx"),
            "OUTPUT": str(classes),
        },
    )
    return classes


def test_labels_named_after_their_file_are_the_models_single_class(
    shared_data, kampala_prediction, run_algorithm, tmp_path
):
    """A newcomer's buildings_all.geojson (one layer, no class field) scores as buildings.geojson:
    its only class is the model's only class 'buildings', and the log says so."""
    labels = shared_data / "fair_kampala_buildings/buildings.geojson"
    renamed = tmp_path / "buildings_all.geojson"
    shutil.copyfile(labels, renamed)
    oracle = run_algorithm(
        ALG, {"PREDICTION": str(kampala_prediction), "LABELS": [str(labels)], "OUTPUT_HTML": None}
    )
    log = LogFeedback()
    result = run_algorithm(
        ALG,
        {"PREDICTION": str(kampala_prediction), "LABELS": [str(renamed)], "OUTPUT_HTML": None},
        log,
    )

    def iou(run) -> dict[str, float]:
        return {row["name"]: row["iou"] for row in json.loads(run["METRICS"])["classes"]}

    expected = iou(oracle)
    assert set(expected) == {"background", "buildings"} and expected["buildings"] > 0.5
    assert iou(result) == expected
    assert result["OVERALL_ACCURACY"] == oracle["OVERALL_ACCURACY"]
    assert any("'buildings_all'" in line and "'buildings'" in line for line in log.lines), log.lines

    # The oracle's oracle: GDAL's own rasterization of the labels on the class raster's grid.
    predicted = _read(kampala_prediction) == 1
    truth = gdal_rasterize_oracle(labels, kampala_prediction, 1).astype(bool)
    assert expected["buildings"] == pytest.approx(
        (predicted & truth).sum() / (predicted | truth).sum(), abs=0.01
    )


def test_foreground_names_that_match_nothing_are_refused(sample_scene, run_algorithm, tmp_path):
    """Two model classes and a layer named after neither: no guess, an error naming the fix."""
    labels, mask, prediction = _landcover_and_model(sample_scene, run_algorithm, tmp_path)
    model_values = _read(prediction)
    for parameters in (
        {"LABELS": [labels]},
        {
            "REFERENCE": _write(
                tmp_path / "ref.tif",
                model_values,
                255,
                [LabelClass(1, "houses", "#ff0000"), LabelClass(2, "lakes", "#0000ff")],
                like=mask,
            )
        },
    ):
        with pytest.raises(QgsProcessingException, match=r"NAME_FIELD.*CLASS_MATCHING"):
            run_algorithm(ALG, {"PREDICTION": prediction, **parameters, "OUTPUT_HTML": None})
    by_value = run_algorithm(
        ALG, {"PREDICTION": prediction, "LABELS": [labels], "CLASS_MATCHING": 1, "OUTPUT_HTML": None}
    )
    assert json.loads(by_value["METRICS"])["class_matching"] == "by value"  # the way out still works
