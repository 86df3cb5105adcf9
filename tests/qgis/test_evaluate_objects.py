"""rsdl:evaluateobjects in QGIS: hand-checkable counts, the output layers, a reference in another
CRS, polygons against boxes, agreement with pycocotools' COCOeval on generated boxes, real tree
crowns against jittered copies, and the refusals."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.metrics.object_matching import evaluate_objects
from tests.log_feedback import LogFeedback

ALG = "rsdl:evaluateobjects"
UTM = "EPSG:32633"
TREES = "deepforest_trees/SOAP_061_boxes.gpkg"

# The hand-checkable case (map units): three reference boxes, four predictions.
REFERENCE_BOXES = [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)]
PREDICTED_BOXES = [
    ((0, 0, 10, 10), 0.9),  # reference 1 exactly: TP, IoU 1
    ((21, 0, 31, 10), 0.8),  # reference 2: TP, IoU 9/11
    ((1, 0, 11, 10), 0.7),  # reference 1 again, already taken: FP (best IoU 9/11)
    ((60, 0, 70, 10), 0.6),  # nothing there: FP (best IoU 0)
]
X0, Y0 = 500_000.0, 4_000_000.0  # boxes placed at a UTM position


class WarningFeedback(LogFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning: str) -> None:
        self.warnings.append(warning)
        super().pushWarning(warning)


def _box(x1: float, y1: float, x2: float, y2: float) -> QgsGeometry:
    return QgsGeometry.fromWkt(
        f"POLYGON(({X0 + x1} {Y0 + y1},{X0 + x2} {Y0 + y1},{X0 + x2} {Y0 + y2},{X0 + x1} {Y0 + y2},"
        f"{X0 + x1} {Y0 + y1}))"
    )


def _layer(
    geometries, attributes=None, fields="class_name:string&field=score:double", crs=UTM
) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Polygon?crs={crs}&field={fields}", "objects", "memory")
    features = []
    for index, geometry in enumerate(geometries):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(geometry)
        if attributes is not None:
            # Plain Python values: numpy scalars are not QVariant-convertible.
            feature.setAttributes(
                [value.item() if isinstance(value, np.generic) else value for value in attributes[index]]
            )
        features.append(feature)
    added, _ = layer.dataProvider().addFeatures(features)
    assert added and layer.featureCount() == len(features)
    return layer


def _save(layer: QgsVectorLayer, path) -> str:
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    error = QgsVectorFileWriter.writeAsVectorFormatV2(layer, str(path), layer.transformContext(), options)[0]
    assert error == QgsVectorFileWriter.NoError
    return str(path)


def _hand_layers():
    predictions = _layer(
        [_box(*box) for box, _ in PREDICTED_BOXES], [("tree", score) for _, score in PREDICTED_BOXES]
    )
    reference = _layer([_box(*box) for box in REFERENCE_BOXES], [("tree",)] * 3, fields="kind:string")
    return predictions, reference


def _read(path) -> list[dict]:
    layer = QgsVectorLayer(str(path), "read", "ogr")
    assert layer.isValid(), path
    names = layer.fields().names()
    return [
        {**dict(zip(names, feature.attributes())), "wkt": feature.geometry().asWkt()}
        for feature in layer.getFeatures()
    ]


def _outputs(tmp_path, prefix: str = "") -> dict[str, str]:
    return {
        "OUTPUT_MATCHED": str(tmp_path / f"{prefix}matched.gpkg"),
        "OUTPUT_FALSE_POSITIVES": str(tmp_path / f"{prefix}false_positives.gpkg"),
        "OUTPUT_MISSED": str(tmp_path / f"{prefix}missed.gpkg"),
    }


def test_hand_checkable_counts_and_output_layers(run_algorithm, tmp_path):
    predictions, reference = _hand_layers()
    report, table = tmp_path / "objects.html", tmp_path / "objects.csv"
    result = run_algorithm(
        ALG,
        {
            "PREDICTIONS": predictions,
            "REFERENCE": reference,
            "OUTPUT_REPORT": str(report),
            "OUTPUT_CSV": str(table),
            **_outputs(tmp_path),
        },
    )
    assert (result["TP"], result["FP"], result["FN"]) == (2, 2, 1)
    assert result["PRECISION"] == pytest.approx(0.5)
    assert result["RECALL"] == pytest.approx(2 / 3)
    assert result["F1"] == pytest.approx(4 / 7)
    assert result["AP50"] == pytest.approx(67 / 101)  # precision 1 up to recall 2/3
    assert result["AP"] == pytest.approx((7 * 67 + 3 * 34) / 1010)  # IoU 9/11 fails at 0.85..0.95
    per_class = json.loads(result["PER_CLASS"])
    assert [row["name"] for row in per_class] == ["all objects"]  # no REF_CLASS_FIELD: one class
    assert per_class[0]["tp"] == 2

    matched = _read(result["OUTPUT_MATCHED"])
    assert [(row["class_name"], row["score"]) for row in matched] == [("tree", 0.9), ("tree", 0.8)]
    assert [row["matched_fid"] for row in matched] == [1, 2]
    assert [row["match_iou"] for row in matched] == pytest.approx([1.0, 9 / 11])
    false_positives = _read(result["OUTPUT_FALSE_POSITIVES"])
    assert [row["score"] for row in false_positives] == [0.7, 0.6]
    assert [row["best_iou"] for row in false_positives] == pytest.approx([9 / 11, 0.0])
    missed = _read(result["OUTPUT_MISSED"])
    assert [(row["kind"], row["best_iou"]) for row in missed] == [("tree", 0.0)]
    assert QgsGeometry.fromWkt(missed[0]["wkt"]).equals(_box(*REFERENCE_BOXES[2]))

    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [(row["name"], row["tp"], row["fp"], row["fn"]) for row in rows] == [
        ("all objects", "2", "2", "1"),
        ("(all classes)", "2", "2", "1"),
    ]
    page = report.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "Precision-recall" in page
    assert leftover_temporaries(tmp_path) == []


def test_declared_outputs_serve_the_modeler(rsdl_provider):
    algorithm = QgsApplication.processingRegistry().algorithmById(ALG)
    for name in ("TP", "FP", "FN", "PRECISION", "RECALL", "F1", "AP50", "AP"):
        assert isinstance(algorithm.outputDefinition(name), QgsProcessingOutputNumber), name
    assert isinstance(algorithm.outputDefinition("PER_CLASS"), QgsProcessingOutputString)
    assert isinstance(algorithm.outputDefinition("OUTPUT_REPORT"), QgsProcessingOutputHtml)
    assert algorithm.group() == QgsApplication.processingRegistry().algorithmById("rsdl:evaluate").group()


def test_reference_in_another_crs_gives_the_same_result(run_algorithm, tmp_path):
    predictions, reference = _hand_layers()
    utm_path = _save(reference, tmp_path / "reference_utm.gpkg")
    geographic = str(tmp_path / "reference_wgs84.gpkg")
    gdal.VectorTranslate(geographic, utm_path, options=gdal.VectorTranslateOptions(dstSRS="EPSG:4326"))
    assert "4326" in QgsVectorLayer(geographic, "r", "ogr").crs().authid()
    same = run_algorithm(ALG, {"PREDICTIONS": predictions, "REFERENCE": utm_path, **_outputs(tmp_path, "a_")})
    moved = run_algorithm(
        ALG, {"PREDICTIONS": predictions, "REFERENCE": geographic, **_outputs(tmp_path, "b_")}
    )
    for key in ("TP", "FP", "FN", "PRECISION", "RECALL", "F1", "AP50", "AP"):
        assert moved[key] == pytest.approx(same[key], abs=1e-9), key
    # Matched IoUs agree to the reprojection's round trip (sub-millimetre on 10 m boxes).
    first, second = _read(same["OUTPUT_MATCHED"]), _read(moved["OUTPUT_MATCHED"])
    assert [row["match_iou"] for row in second] == pytest.approx(
        [row["match_iou"] for row in first], abs=1e-6
    )
    missed = QgsVectorLayer(moved["OUTPUT_MISSED"], "m", "ogr")
    assert "4326" in missed.crs().authid()  # missed references keep the reference's own CRS


def test_polygons_against_boxes(run_algorithm, tmp_path):
    # A right triangle and its bounding box: IoU exactly 1/2. A disc and its bounding square: pi/4.
    triangle = QgsGeometry.fromWkt(f"POLYGON(({X0} {Y0},{X0 + 10} {Y0},{X0} {Y0 + 10},{X0} {Y0}))")
    disc = QgsGeometry.fromPointXY(QgsPointXY(X0 + 35, Y0 + 5)).buffer(5, 64)
    reference = _layer([triangle, disc], [("a",), ("b",)], fields="name:string")
    predictions = _layer([_box(0, 0, 10, 10), _box(30, 0, 40, 10)], [("x", 0.9), ("x", 0.8)])
    disc_iou = disc.area() / 100.0
    assert disc_iou == pytest.approx(math.pi / 4, abs=1e-3)
    loose = run_algorithm(
        ALG,
        {
            "PREDICTIONS": predictions,
            "REFERENCE": reference,
            "IOU_THRESHOLD": 0.5,
            **_outputs(tmp_path, "l_"),
        },
    )
    assert (loose["TP"], loose["FP"], loose["FN"]) == (2, 0, 0)  # 1/2 >= 0.5: the threshold is inclusive
    assert [row["match_iou"] for row in _read(loose["OUTPUT_MATCHED"])] == pytest.approx([0.5, disc_iou])
    strict = run_algorithm(
        ALG,
        {
            "PREDICTIONS": predictions,
            "REFERENCE": reference,
            "IOU_THRESHOLD": 0.6,
            **_outputs(tmp_path, "s_"),
        },
    )
    assert (strict["TP"], strict["FP"], strict["FN"]) == (1, 1, 1)
    missed = _read(strict["OUTPUT_MISSED"])
    assert [(row["name"], row["best_iou"]) for row in missed] == [("a", pytest.approx(0.5))]


def _random_boxes(seed: int):
    """References in three classes; predictions: jittered references (some relabelled), double
    detections and strays. (x, y, w, h) in map units."""
    rng = np.random.default_rng(seed)
    count = 40
    references = np.c_[rng.uniform(0, 200, (count, 2)), rng.uniform(4, 25, (count, 2))]
    reference_classes = rng.integers(0, 3, count)
    kept = rng.random(count) < 0.85
    jittered = references[kept] + rng.normal(0, 2.0, (int(kept.sum()), 4))
    doubles = jittered[: len(jittered) // 4] + rng.normal(0, 1.0, (len(jittered) // 4, 4))
    strays = np.c_[rng.uniform(0, 200, (8, 2)), rng.uniform(4, 25, (8, 2))]
    predictions = np.r_[jittered, doubles, strays]
    predictions[:, 2:] = np.abs(predictions[:, 2:]) + 1
    jittered_classes = reference_classes[kept].copy()
    relabel = rng.random(len(jittered_classes)) < 0.1
    jittered_classes[relabel] = rng.integers(0, 3, int(relabel.sum()))
    predicted_classes = np.r_[jittered_classes, jittered_classes[: len(doubles)], rng.integers(0, 3, 8)]
    scores = np.round(rng.random(len(predictions)), 2)
    return references, reference_classes, predictions, predicted_classes, scores


def _cocoeval_precision(references, reference_classes, predictions, predicted_classes, scores) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = COCO()
    truth.dataset = {
        "info": {},
        "images": [{"id": 1}],
        "categories": [{"id": c + 1} for c in range(3)],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": int(c) + 1,
                "bbox": [float(v) for v in box],
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            }
            for i, (box, c) in enumerate(zip(references, reference_classes))
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        detections = truth.loadRes(
            [
                {"image_id": 1, "category_id": int(c) + 1, "bbox": [float(v) for v in box], "score": float(s)}
                for box, c, s in zip(predictions, predicted_classes, scores)
            ]
        )
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.params.maxDets = [10_000]
        evaluation.params.areaRng = [[0.0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation.eval["precision"][:, :, :, 0, 0]


def _xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_agrees_with_cocoeval_and_the_core_module(run_algorithm, tmp_path, seed):
    pytest.importorskip("pycocotools", reason="pycocotools is the oracle (requirements/dev.txt)")
    references, reference_classes, predictions, predicted_classes, scores = _random_boxes(seed)
    names = ["oak", "pine", "birch"]

    def boxes(rows):
        return [_box(x, y, x + w, y + h) for x, y, w, h in rows]

    # "n": each feature's row in the arrays, to find it in the output layers.
    prediction_layer = _layer(
        boxes(predictions),
        [(names[c], s, n) for n, (c, s) in enumerate(zip(predicted_classes, scores))],
        fields="class_name:string&field=score:double&field=n:integer",
    )
    reference_layer = _layer(
        boxes(references),
        [(names[c], n) for n, c in enumerate(reference_classes)],
        fields="species:string&field=n:integer",
    )
    result = run_algorithm(
        ALG,
        {
            "PREDICTIONS": prediction_layer,
            "REFERENCE": reference_layer,
            "REF_CLASS_FIELD": "species",
            **_outputs(tmp_path),
        },
    )
    oracle = _cocoeval_precision(references, reference_classes, predictions, predicted_classes, scores)
    assert result["AP"] == pytest.approx(oracle[oracle > -1].mean(), abs=1e-6)
    assert result["AP50"] == pytest.approx(oracle[0][oracle[0] > -1].mean(), abs=1e-6)
    per_class = {row["name"]: row for row in json.loads(result["PER_CLASS"])}
    for class_id, name in enumerate(names):
        assert per_class[name]["ap"] == pytest.approx(oracle[:, :, class_id].mean(), abs=1e-6), name
        assert per_class[name]["ap50"] == pytest.approx(oracle[0, :, class_id].mean(), abs=1e-6), name

    core = evaluate_objects(scores, predicted_classes, reference_classes, _xywh_iou(predictions, references))
    assert (result["TP"], result["FP"], result["FN"]) == (core.tp, core.fp, core.fn)
    assert result["F1"] == pytest.approx(core.f1)
    # The layers hold exactly the matched, false-positive and missed features.
    matched, false_positives = _read(result["OUTPUT_MATCHED"]), _read(result["OUTPUT_FALSE_POSITIVES"])
    missed = _read(result["OUTPUT_MISSED"])
    assert sorted(row["n"] for row in matched) == np.flatnonzero(core.matches.prediction_match >= 0).tolist()
    assert (
        sorted(row["n"] for row in false_positives)
        == np.flatnonzero(core.matches.prediction_match < 0).tolist()
    )
    assert sorted(row["n"] for row in missed) == np.flatnonzero(core.matches.reference_match < 0).tolist()
    # Memory layer ids count from 1 in insertion order: matched_fid - 1 is the reference's row.
    assert [row["matched_fid"] - 1 for row in matched] == [
        core.matches.prediction_match[row["n"]] for row in matched
    ]
    assert core.tp > 10 and core.fp > 5 and core.fn > 3  # a case with all three kinds


def _jittered_copy(source: str, target, jitter: float, seed: int = 0) -> str:
    """The layer's boxes moved and resized by up to ``jitter`` map units per edge, with a score."""
    layer = QgsVectorLayer(source, "trees", "ogr")
    rng = np.random.default_rng(seed)
    geometries, attributes = [], []
    for feature in layer.getFeatures():
        box = feature.geometry().boundingBox()
        dx1, dy1, dx2, dy2 = rng.uniform(-jitter, jitter, 4)
        geometries.append(
            QgsGeometry.fromRect(
                QgsRectangle(
                    box.xMinimum() + dx1, box.yMinimum() + dy1, box.xMaximum() + dx2, box.yMaximum() + dy2
                )
            )
        )
        attributes.append((feature["label"], float(rng.uniform(0.3, 1.0))))
    copy = _layer(geometries, attributes, fields="label:string&field=score:double", crs=layer.crs().authid())
    return _save(copy, target)


def test_real_tree_crowns_against_jittered_copies(run_algorithm, shared_data, tmp_path):
    reference = str(shared_data / TREES)
    count = QgsVectorLayer(reference, "trees", "ogr").featureCount()
    assert count == 37
    itself = run_algorithm(
        ALG, {"PREDICTIONS": reference, "REFERENCE": reference, **_outputs(tmp_path, "i_")}
    )
    assert (itself["TP"], itself["FP"], itself["FN"]) == (37, 0, 0)
    assert itself["AP"] == pytest.approx(1.0) and itself["AP50"] == pytest.approx(1.0)  # every score is 1

    # Boxes of about 2-4 m moved by up to 10 cm per edge: IoU stays far above 0.5.
    jittered = _jittered_copy(reference, tmp_path / "jittered.gpkg", 0.1)
    result = run_algorithm(
        ALG,
        {
            "PREDICTIONS": jittered,
            "REFERENCE": reference,
            "PRED_CLASS_FIELD": "label",
            "REF_CLASS_FIELD": "label",
            **_outputs(tmp_path, "j_"),
        },
    )
    assert (result["TP"], result["FP"], result["FN"]) == (37, 0, 0)
    assert result["AP50"] == pytest.approx(1.0)
    assert 0.0 < result["AP"] < 1.0  # the strict thresholds (0.95) see the jitter
    per_class = {row["name"]: row for row in json.loads(result["PER_CLASS"])}
    assert {name: row["references"] for name, row in per_class.items()} == {"Alive": 9, "Dead": 28}
    assert min(row["match_iou"] for row in _read(result["OUTPUT_MATCHED"])) > 0.8

    # Large jitter (up to 1.5 m per edge) loses matches: the count falls and FP = FN.
    loose = _jittered_copy(reference, tmp_path / "loose.gpkg", 1.5, seed=1)
    worse = run_algorithm(ALG, {"PREDICTIONS": loose, "REFERENCE": reference, **_outputs(tmp_path, "w_")})
    assert worse["TP"] < 37 and worse["FP"] == worse["FN"] == 37 - worse["TP"]


def _bow_tie(x: float) -> QgsGeometry:
    """A self-intersecting square (x..x+10, 0..10): make-valid gives two triangles, half its box."""
    left, right = X0 + x, X0 + x + 10
    return QgsGeometry.fromWkt(
        f"POLYGON(({left} {Y0},{right} {Y0 + 10},{right} {Y0},{left} {Y0 + 10},{left} {Y0}))"
    )


def test_invalid_geometries_are_repaired_and_said(run_algorithm, tmp_path):
    assert not _bow_tie(0).isGeosValid()
    predictions, _ = _hand_layers()
    reference = _layer(
        [_bow_tie(0), _box(*REFERENCE_BOXES[1]), _bow_tie(40)], [("a",), ("b",), ("c",)], fields="kind:string"
    )
    feedback = WarningFeedback()
    result = run_algorithm(
        ALG, {"PREDICTIONS": predictions, "REFERENCE": reference, **_outputs(tmp_path)}, feedback
    )
    assert any("2 invalid geometries" in text and "REFERENCE" in text for text in feedback.warnings)
    # The repaired bow-tie covers half the box: prediction 1 matches it at IoU 0.5.
    assert [row["match_iou"] for row in _read(result["OUTPUT_MATCHED"])] == pytest.approx([0.5, 9 / 11])
    # The missed bow-tie is written as it was, invalid geometry included.
    missed = _read(result["OUTPUT_MISSED"])
    assert [row["kind"] for row in missed] == ["c"]
    assert QgsGeometry.fromWkt(missed[0]["wkt"]).equals(_bow_tie(40))


def _refusal(run_algorithm, parameters) -> str:
    with pytest.raises(QgsProcessingException) as raised:
        run_algorithm(ALG, parameters)
    return str(raised.value)


def test_refusals_name_the_parameter_and_the_way_out(run_algorithm):
    predictions, reference = _hand_layers()
    empty = _layer([], fields="kind:string")
    message = _refusal(run_algorithm, {"PREDICTIONS": predictions, "REFERENCE": empty})
    assert "REFERENCE" in message and "no object" in message
    far = _layer([QgsGeometry.fromRect(QgsRectangle(0, 0, 1, 1))])  # 500 km west of the reference
    message = _refusal(run_algorithm, {"PREDICTIONS": far, "REFERENCE": reference})
    assert "do not overlap" in message and "CRS" in message
    message = _refusal(
        run_algorithm, {"PREDICTIONS": predictions, "REFERENCE": reference, "REF_CLASS_FIELD": "nope"}
    )
    assert "REF_CLASS_FIELD" in message and "'kind'" in message
    message = _refusal(
        run_algorithm,
        {
            "PREDICTIONS": predictions,
            "REFERENCE": reference,
            "REF_CLASS_FIELD": "kind",
            "PRED_CLASS_FIELD": "nope",
        },
    )
    assert "PRED_CLASS_FIELD" in message and "'class_name'" in message
    other = _layer([_box(*box) for box in REFERENCE_BOXES], [("car",)] * 3, fields="kind:string")
    message = _refusal(
        run_algorithm, {"PREDICTIONS": predictions, "REFERENCE": other, "REF_CLASS_FIELD": "kind"}
    )
    assert "'tree'" in message and "'car'" in message and "leave REF_CLASS_FIELD empty" in message


@pytest.mark.parametrize("class_field", ["", "kind"])
def test_empty_predictions_miss_every_reference_object(class_field, run_algorithm, tmp_path):
    # A detector that found nothing (rsdl:detect writes an empty layer): a result, not an error,
    # so that a Modeler chain detect -> evaluateobjects runs through.
    reference = _layer(
        [_box(*box) for box in REFERENCE_BOXES], [("tree",), ("tree",), ("car",)], fields="kind:string"
    )
    predictions = _save(_layer([]), tmp_path / "nothing.gpkg")  # a file, as rsdl:detect writes it
    report, table = tmp_path / "objects.html", tmp_path / "objects.csv"
    feedback = WarningFeedback()
    result = run_algorithm(
        ALG,
        {
            "PREDICTIONS": predictions,
            "REFERENCE": reference,
            "REF_CLASS_FIELD": class_field,
            "OUTPUT_REPORT": str(report),
            "OUTPUT_CSV": str(table),
            **_outputs(tmp_path),
        },
        feedback,
    )
    assert any("PREDICTIONS" in text and "CONFIDENCE_THRESHOLD" in text for text in feedback.warnings)
    assert (result["TP"], result["FP"], result["FN"]) == (0, 0, 3)
    assert result["PRECISION"] is None and result["F1"] is None  # undefined: nothing predicted
    assert result["RECALL"] == 0.0
    assert result["AP50"] == 0.0 and result["AP"] == 0.0
    per_class = json.loads(result["PER_CLASS"])
    expected = {"car": 1, "tree": 2} if class_field else {"all objects": 3}
    assert {row["name"]: row["fn"] for row in per_class} == expected
    for row in per_class:  # every class of the reference: nothing found, AP 0, precision undefined
        assert (row["tp"], row["fp"], row["predictions"]) == (0, 0, 0)
        assert row["precision"] is None and row["recall"] == 0.0 and row["f1"] is None
        assert row["ap50"] == 0.0 and row["ap"] == 0.0
    assert _read(result["OUTPUT_MATCHED"]) == [] and _read(result["OUTPUT_FALSE_POSITIVES"]) == []
    missed = _read(result["OUTPUT_MISSED"])
    assert sorted(row["kind"] for row in missed) == ["car", "tree", "tree"]
    assert all(row["best_iou"] == 0.0 for row in missed)
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    totals = rows[-1]  # '(all classes)': undefined precision is an empty cell, recall a real 0
    assert (totals["tp"], totals["fn"], totals["precision"], float(totals["recall"])) == ("0", "3", "", 0.0)
    assert "data:image/png;base64," in report.read_text(encoding="utf-8")
    assert leftover_temporaries(tmp_path) == []


def test_without_a_score_field_every_prediction_scores_one(run_algorithm, tmp_path):
    predictions, reference = _hand_layers()
    feedback = WarningFeedback()
    result = run_algorithm(
        ALG, {"PREDICTIONS": predictions, "REFERENCE": reference, "SCORE_FIELD": "confidence"}, feedback
    )
    assert any("SCORE_FIELD 'confidence'" in text for text in feedback.warnings)
    assert (result["TP"], result["FP"], result["FN"]) == (2, 2, 1)  # layer order is the score order here
    assert (
        result["OUTPUT_MATCHED"] is None and result["OUTPUT_REPORT"] is None
    )  # nothing asked: nothing written
