"""rsdl:evaluateobjects through qgis_process on real tree crowns: NEON's hand-drawn boxes as the
reference, a jittered and thinned copy with scores as the predictions; the JSON results against
pycocotools' COCOeval on the same boxes, and the output files."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from osgeo import ogr, osr

pytestmark = pytest.mark.qgis_process
TREES = "deepforest_trees/2019_YELL_2_541000_4977000_image_crop_boxes.gpkg"


def _boxes(path) -> tuple[np.ndarray, osr.SpatialReference]:
    """(N, 4) x, y, w, h of the layer's features (their envelopes), in fid order, and its CRS."""
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    rows = []
    for feature in sorted(layer, key=lambda f: f.GetFID()):
        x1, x2, y1, y2 = feature.GetGeometryRef().GetEnvelope()
        rows.append((x1, y1, x2 - x1, y2 - y1))
    return np.array(rows), layer.GetSpatialRef().Clone()


def _write_predictions(path, boxes: np.ndarray, scores: np.ndarray, srs: osr.SpatialReference) -> None:
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = dataset.CreateLayer("predictions", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
    for (x, y, w, h), score in zip(boxes, scores):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_name", "Tree")
        feature.SetField("score", float(score))
        feature.SetGeometry(
            ogr.CreateGeometryFromWkt(f"POLYGON(({x} {y},{x + w} {y},{x + w} {y + h},{x} {y + h},{x} {y}))")
        )
        layer.CreateFeature(feature)
    dataset = None


def _cocoeval_precision(references: np.ndarray, predictions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = COCO()
    truth.dataset = {
        "info": {},
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": box.tolist(),
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            }
            for i, box in enumerate(references)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        detections = truth.loadRes(
            [
                {"image_id": 1, "category_id": 1, "bbox": box.tolist(), "score": float(s)}
                for box, s in zip(predictions, scores)
            ]
        )
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.params.maxDets = [10_000]
        evaluation.params.areaRng = [[0.0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation.eval["precision"][:, :, 0, 0, 0]


def test_evaluate_objects_through_qgis_process(qgis_process, shared_data, tmp_path):
    pytest.importorskip("pycocotools", reason="pycocotools is the oracle (requirements/dev.txt)")
    reference = shared_data / TREES
    references, srs = _boxes(reference)
    assert len(references) == 279
    rng = np.random.default_rng(4)
    kept = rng.random(len(references)) < 0.9  # about a tenth of the trees missed
    predictions = references[kept] + rng.normal(0.0, 0.08, (int(kept.sum()), 4))  # boxes of 1-5 m, 8 cm noise
    strays = np.c_[references[:15, :2] + 3.0, references[:15, 2:]]  # false positives beside real trees
    predictions = np.r_[predictions, strays]
    scores = np.r_[rng.uniform(0.4, 1.0, int(kept.sum())), rng.uniform(0.0, 0.7, len(strays))]
    predicted = tmp_path / "predictions.gpkg"
    _write_predictions(predicted, predictions, scores, srs)

    report, missed = tmp_path / "objects.html", tmp_path / "missed.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:evaluateobjects",
        {
            "PREDICTIONS": str(predicted),
            "REFERENCE": str(reference),
            "IOU_THRESHOLD": 0.5,
            "OUTPUT_REPORT": str(report),
            "OUTPUT_MISSED": str(missed),
            "OUTPUT_MATCHED": "TEMPORARY_OUTPUT",
            "OUTPUT_FALSE_POSITIVES": "TEMPORARY_OUTPUT",
        },
    )
    results = result["results"]
    oracle = _cocoeval_precision(references, predictions, scores)
    assert results["AP50"] == pytest.approx(oracle[0].mean(), abs=1e-6)
    assert results["AP"] == pytest.approx(oracle.mean(), abs=1e-6)
    assert 0.5 < results["AP"] < results["AP50"] < 1.0
    tp, fp, fn = results["TP"], results["FP"], results["FN"]
    assert tp + fn == 279 and tp + fp == len(predictions)
    assert fn >= 279 - int(kept.sum()) and fp >= len(strays)
    assert results["PRECISION"] == pytest.approx(tp / (tp + fp)) and results["RECALL"] == pytest.approx(
        tp / 279
    )
    per_class = json.loads(results["PER_CLASS"])
    assert (
        len(per_class) == 1
        and per_class[0]["tp"] == tp
        and per_class[0]["ap"] == pytest.approx(results["AP"])
    )
    assert results["OUTPUT_REPORT"] == str(report) and "data:image/png;base64," in report.read_text()
    assert ogr.Open(str(missed)).GetLayer(0).GetFeatureCount() == fn


def test_empty_predictions_through_qgis_process(qgis_process, shared_data, tmp_path):
    # A detector that found nothing: every tree missed, precision null in the JSON (undefined), exit 0.
    reference = shared_data / TREES
    references, srs = _boxes(reference)
    predicted = tmp_path / "nothing.gpkg"
    _write_predictions(predicted, np.empty((0, 4)), np.empty(0), srs)
    result = qgis_process.run_algorithm(
        "rsdl:evaluateobjects",
        {
            "PREDICTIONS": str(predicted),
            "REFERENCE": str(reference),
            "OUTPUT_MISSED": str(tmp_path / "missed.gpkg"),
            "OUTPUT_REPORT": str(tmp_path / "objects.html"),
            "OUTPUT_MATCHED": "TEMPORARY_OUTPUT",
            "OUTPUT_FALSE_POSITIVES": "TEMPORARY_OUTPUT",
        },
    )
    results = result["results"]
    assert (results["TP"], results["FP"], results["FN"]) == (0, 0, len(references))
    assert results["PRECISION"] is None and results["F1"] is None
    assert results["RECALL"] == 0 and results["AP50"] == 0 and results["AP"] == 0
    assert any("CONFIDENCE_THRESHOLD" in line for line in result["log"]["warning"])
    assert ogr.Open(str(tmp_path / "missed.gpkg")).GetLayer(0).GetFeatureCount() == len(references)
