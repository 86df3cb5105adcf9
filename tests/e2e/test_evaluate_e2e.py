"""rsdl:evaluate through qgis_process, as the README shows it."""

from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.qgis_process
ABER = "rsgislib_aber_s2"


def test_evaluate_through_qgis_process(qgis_process, shared_data, tmp_path):
    report, table, heatmap = (
        tmp_path / "evaluation.html",
        tmp_path / "classes.csv",
        tmp_path / "confusion.png",
    )
    result = qgis_process.run_algorithm(
        "rsdl:evaluate",
        {
            "PREDICTION": str(shared_data / ABER / "sen2_20210527_aber_cls.tif"),
            "REFERENCE": str(shared_data / ABER / "aber_landcover_4class_refmask.tif"),
            "OUTPUT_HTML": str(report),
            "OUTPUT_CSV": str(table),
            "CONFUSION_PNG": str(heatmap),
        },
    )
    results = result["results"]
    for name in ("OVERALL_ACCURACY", "KAPPA", "MEAN_IOU", "MEAN_F1"):
        assert isinstance(results[name], float) and 0.0 <= results[name] <= 1.0, name
    assert json.loads(results["METRICS"])["overall_accuracy"] == results["OVERALL_ACCURACY"]
    assert results["OUTPUT_HTML"] == str(report) and report.exists() and heatmap.exists()
    assert [row["name"] for row in csv.DictReader(table.open(encoding="utf-8"))] == [
        "Forest",
        "Grass",
        "Urban",
        "Water",
    ]


def test_numbers_only_without_file_outputs(qgis_process, shared_data, tmp_path):
    result = qgis_process.run_algorithm(
        "rsdl:evaluate",
        {
            "PREDICTION": str(shared_data / ABER / "sen2_20210527_aber_cls.tif"),
            "LABELS": str(shared_data / ABER / "aber_landcover_4class_polygons.gpkg"),
            "FIELD": "class_id",
            "UNLABELLED": 1,
        },
    )
    assert 0.9 < result["results"]["OVERALL_ACCURACY"] <= 1.0
    assert result["results"]["OUTPUT_HTML"] is None
