"""The shipped Graphical Modeler model: regenerated identically by its script (on the QGIS that
wrote it; as an equivalent model on newer QGIS), and run through qgis_process both as the
provider's algorithm and as a .model3 path."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from xml.etree.ElementTree import canonicalize

import numpy as np
import pytest

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests.rasterize_cases import read_band

REPO_MODEL = "rsdl_qgis_plugin/models/rasterize_segment_evaluate.model3"
MODEL_ID = "rsdl:rasterize_segment_evaluate"
SCENE_CLASSES = {"background", "building", "water", "vegetation"}


# The QGIS that wrote the committed model. Newer QGIS writes new models in another form (from 3.26,
# qgis/QGIS#47559: ``internal_version`` Version2, outputs named after their descriptions instead
# of "<step>:<output>", and more keys), so only this version can reproduce the file itself.
GENERATED_WITH = (3, 22)


def _qgis_version() -> tuple[int, int]:
    from qgis.core import Qgis

    return Qgis.QGIS_VERSION_INT // 10000, Qgis.QGIS_VERSION_INT // 100 % 100


def _build_model(repo_root, *arguments: str) -> str:
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    process = subprocess.run(
        [sys.executable, str(repo_root / "scripts/build_modeler_model.py"), *arguments],
        check=True,
        capture_output=True,
        env=environment,
        text=True,
        timeout=120,
    )
    return process.stdout


def test_regenerating_the_model_gives_the_committed_file(repo_root, tmp_path):
    written = tmp_path / "model.model3"
    _build_model(repo_root, str(written))
    if _qgis_version() == GENERATED_WITH:
        # Canonical XML: the same content whatever order Qt wrote the attributes in.
        regenerated = canonicalize(from_file=str(written), strip_text=True)
        committed = canonicalize(from_file=str(repo_root / REPO_MODEL), strip_text=True)
        assert regenerated == committed, (
            "The committed model differs from what scripts/build_modeler_model.py writes: run it "
            "and commit the result."
        )
        return
    # Newer QGIS: the committed file cannot be reproduced byte for byte, so both files are
    # loaded by this QGIS and compared as it sees them (inputs, steps, each step's parameter
    # values and sources, outputs, help), output naming aside; the committed one must be valid.
    summaries = json.loads(_build_model(repo_root, "--summary", str(repo_root / REPO_MODEL), str(written)))
    committed, regenerated = summaries[str(repo_root / REPO_MODEL)], summaries[str(written)]
    problems = committed["problems"]
    assert problems == [], f"this QGIS finds the committed model invalid: {problems}"
    assert set(committed["model"]["children"]) == {"segment", "rasterize", "evaluate"}
    assert committed["model"] == regenerated["model"], (
        "The committed model, as this QGIS loads it, differs from what scripts/build_modeler_model.py "
        f"builds here: regenerate it with QGIS {'.'.join(map(str, GENERATED_WITH))} and commit the result."
    )


@pytest.mark.qgis_process
@pytest.mark.parametrize("by", ["id", "path"])
def test_model_runs_through_qgis_process(by, qgis_process, repo_root, sample_scene, test_models, tmp_path):
    algorithm = MODEL_ID if by == "id" else str(repo_root / REPO_MODEL)
    outputs = {
        "segment:classes": tmp_path / "classes.tif",
        "rasterize:label_mask": tmp_path / "label_mask.tif",
        "evaluate:report": tmp_path / "report.html",
        "evaluate:metrics": tmp_path / "metrics.csv",
    }
    # QGIS 3.22's qgis_process wants every model output named (TEMPORARY_OUTPUT would do).
    result = qgis_process.run_algorithm(
        algorithm,
        {
            "image": str(sample_scene / "scene.tif"),
            "labels": f"{sample_scene / 'labels.gpkg'}|layername=landcover",
            "class_field": "class_name",
            "model": str(test_models["fcn_seg.onnx"]),
            **{name: str(path) for name, path in outputs.items()},
        },
    )
    assert result["results"] == {name: str(path) for name, path in outputs.items()}
    assert all(path.exists() for path in outputs.values())
    assert (tmp_path / "classes.qml").exists()  # the class raster opens styled
    # The labels are burnt onto the class raster's grid, so the two align pixel for pixel.
    assert read_band(outputs["segment:classes"]).shape == read_band(outputs["rasterize:label_mask"]).shape

    rows = list(csv.DictReader(outputs["evaluate:metrics"].open(encoding="utf-8")))
    assert {row["name"] for row in rows} == SCENE_CLASSES
    ratios = [float(row[key]) for row in rows for key in ("iou", "f1", "precision", "recall") if row[key]]
    assert ratios and all(0.0 <= ratio <= 1.0 for ratio in ratios)
    support = sum(int(row["support"]) for row in rows)
    assert support == np.count_nonzero(read_band(outputs["rasterize:label_mask"]) != 255)
    page = outputs["evaluate:report"].read_text(encoding="utf-8")
    assert "Overall accuracy" in page and "data:image/png;base64," in page
    info = result["log"]["info"]
    # water is 3 in the labels (alphabetical) and 2 in the model: matched by name
    assert any("'water' (3) is scored as value 2" in line for line in info)
    assert leftover_temporaries(tmp_path) == []
