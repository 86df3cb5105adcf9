"""rsdl:exportchips MODE objects through the real qgis_process binary: one COCO export of the
DeepForest tree boxes, checked against the source boxes."""

from __future__ import annotations

import json

import pytest
from osgeo import gdal, ogr

from rsdl_qgis_plugin.core.datasets.chip_folder import load_dataset_document
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries

pytestmark = pytest.mark.qgis_process

YELL = "deepforest_trees/2019_YELL_2_541000_4977000_image_crop"


def test_help_documents_the_object_parameters(qgis_process):
    text = qgis_process.run("help", "rsdl:exportchips").stdout
    for name in ("OBJECT_FORMAT", "MIN_VISIBLE_FRACTION", "OBJECT_COUNTS", "annotations.json", "data.yaml"):
        assert name in text


def test_coco_chips_through_qgis_process(shared_data, qgis_process, tmp_path):
    output = tmp_path / "chips"
    labels = shared_data / f"{YELL}_boxes.gpkg"
    result = qgis_process.run_algorithm(
        "rsdl:exportchips",
        {
            "INPUT": str(shared_data / f"{YELL}.tif"),
            "LABELS": str(labels),
            "FIELD": "label",
            "MODE": 3,
            "OBJECT_FORMAT": 0,
            "CHIP_SIZE": 400,
            "STRIDE": 400,
            "VAL_FRACTION": 0,
            "MIN_VISIBLE_FRACTION": 1,
            "OUTPUT": str(output),
        },
    )
    results = result["results"]
    counts = json.loads(results["OBJECT_COUNTS"])
    document = json.loads((output / "train" / "annotations.json").read_text())
    assert (
        len(document["images"]) == json.loads(results["CHIP_COUNTS"])["total"] == 12
    )  # 4 x 3, flush with the edges
    assert counts["train"] == {"Tree": len(document["annotations"])} and counts["total"] > 200
    assert load_dataset_document(output)["objects"]["counts"] == counts
    # With MIN_VISIBLE_FRACTION 1 every annotation is a whole source box, back in map units.
    source = set()
    datasource = ogr.Open(str(labels))
    for feature in datasource.GetLayer(0):
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        source.add(tuple(round(v, 3) for v in (xmin, ymin, xmax, ymax)))
    datasource = None
    files = {image["id"]: image["file_name"] for image in document["images"]}
    found = set()
    for annotation in document["annotations"]:
        x0, dx, _, y0, _, dy = gdal.Open(
            str(output / "train" / files[annotation["image_id"]])
        ).GetGeoTransform()
        x, y, w, h = annotation["bbox"]
        box = (x0 + x * dx, y0 + (y + h) * dy, x0 + (x + w) * dx, y0 + y * dy)
        found.add(tuple(round(v, 3) for v in box))
    assert found <= source and len(found) > 200  # flush edge chips overlap: some boxes twice
    assert leftover_temporaries(tmp_path) == []
