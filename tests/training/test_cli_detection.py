"""The detection commands as a user runs them: ``python -m training fit`` on the tree-crown config
(one short epoch on the real NEON crop), then ``export``, ``evaluate`` and ``predict`` on what it
wrote. The figures are checked against each other and against oracles written by others
(torchmetrics' mAP from the same checkpoint, the plugin's own spec reader)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelType
from rsdl_qgis_plugin.inference.backends import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
TREES = Path(__file__).resolve().parents[3] / "shared" / "data" / "deepforest_trees"
RASTER = TREES / "2019_YELL_2_541000_4977000_image_crop.tif"
BOXES = TREES / "2019_YELL_2_541000_4977000_image_crop_boxes.gpkg"

pytestmark = pytest.mark.skipif(not TREES.is_dir(), reason="the shared NEON tree data is absent")


@pytest.fixture(scope="module")
def fitted(run_training, tmp_path_factory) -> dict[str, Path]:
    """One epoch of two training batches on trees_neon.yaml: the work folder, its checkpoint and
    the config LightningCLI saved beside it."""
    work = tmp_path_factory.mktemp("trees_cli")
    code, output = run_training(
        [
            "fit",
            "--config",
            str(CONFIGS / "trees_neon.yaml"),
            f"--data.init_args.raster={RASTER}",
            f"--data.init_args.labels={BOXES}|layername=trees",
            f"--data.init_args.cache_dir={work / 'cache'}",
            "--data.init_args.num_workers=0",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
        ],
        work,
        timeout=600,
    )
    assert code == 0, output[-4000:]
    version = work / "runs" / "trees_neon" / "version_0"
    checkpoints = sorted((version / "checkpoints").glob("*.ckpt"))
    assert checkpoints, output[-4000:]
    return {"work": work, "checkpoint": checkpoints[0], "config": version / "config.yaml"}


def test_export_writes_a_detector_the_plugin_reads(fitted, run_training):
    model = fitted["work"] / "export" / "trees.onnx"
    code, output = run_training(
        [
            "export",
            "--checkpoint",
            str(fitted["checkpoint"]),
            "--output",
            str(model),
            "--confidence-threshold",
            "0.35",
            "--tile-size",
            "512",
            "--overlap",
            "50",
        ],
        fitted["work"],
    )
    assert code == 0, output[-4000:]
    backend = load_model(model, device="cpu")  # the plugin's own reader, as rsdl:detect loads it
    spec = backend.spec
    assert spec.model_type is ModelType.DETECTOR
    assert list(spec.class_names.values()) == ["Tree"]
    assert [output.name for output in backend.outputs] == ["boxes", "scores", "class_ids"]
    assert (spec.det_conf, spec.det_iou_thresh) == (0.35, 0.5)  # chosen at export; trained NMS IoU
    assert (spec.tile_size, spec.tiles_overlap_percent) == (512, 50.0)  # rsdl:detect's default tiling
    assert spec.training.get("metrics"), "the training metrics travel in the spec"


def test_evaluate_reports_map_and_object_counts(fitted, run_training):
    report = fitted["work"] / "report"
    code, output = run_training(
        [
            "evaluate",
            "--checkpoint",
            str(fitted["checkpoint"]),
            "--config",
            str(fitted["config"]),
            "--output",
            str(report),
            "--split",
            "test",
            "--score-threshold",
            "0.05",
        ],
        fitted["work"],
    )
    assert code == 0, output[-4000:]
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["model_type"] == "Detector" and metrics["split"] == "test"
    assert {"precision_recall.png", "detections.png"} <= set(metrics["files"])
    for name in metrics["files"]:
        assert (report / name).stat().st_size > 0, name
    boxes = metrics["map"]["bbox"]
    assert boxes["map50"] is None or 0.0 <= boxes["map50"] <= 1.0
    objects = metrics["objects"]["bbox"]
    # Every reference is matched or missed; every kept detection is a TP or an FP.
    assert objects["tp"] + objects["fn"] == metrics["references"] > 0
    assert objects["tp"] + objects["fp"] <= metrics["predictions"]
    assert "F1@0.5" in output and str(report) in output


def test_export_refuses_a_confidence_threshold_out_of_range(fitted, run_training):
    model = fitted["work"] / "refused" / "trees.onnx"
    args = ["export", "--checkpoint", str(fitted["checkpoint"]), "--output", str(model)]
    code, output = run_training([*args, "--confidence-threshold", "1.5"], fitted["work"])
    assert code == 1 and "--confidence-threshold must lie between 0 and 1" in output
    code, output = run_training([*args, "--overlap", "100"], fitted["work"])
    assert code == 1 and "--overlap is a percentage of the tile" in output
    assert not model.exists()


def test_predict_writes_the_objects_rsdl_detect_would(fitted, run_training):
    """predict on the exported file: a GeoPackage of tree boxes in the raster's CRS, every one
    scoring at least the threshold asked for, inside the raster."""
    import pyogrio
    import pyogrio.raw
    import rasterio
    import shapely

    model = fitted["work"] / "predict_model" / "trees.onnx"
    code, output = run_training(
        ["export", "--checkpoint", str(fitted["checkpoint"]), "--output", str(model)], fitted["work"]
    )
    assert code == 0, output[-4000:]
    out = fitted["work"] / "predicted"
    args = ["predict", "--model", str(model), "--output-dir", str(out), str(RASTER)]
    code, output = run_training([*args, "--confidence-threshold", "0.05"], fitted["work"])
    assert code == 0, output[-4000:]
    objects = out / f"{RASTER.stem}_objects.gpkg"
    info = pyogrio.read_info(objects, layer="objects")
    assert list(info["fields"]) == ["class_id", "class_name", "score", "area"]
    meta, _, geometry, fields = pyogrio.raw.read(objects, layer="objects")
    with rasterio.open(RASTER) as source:
        assert rasterio.crs.CRS.from_user_input(meta["crs"]) == source.crs
        footprint = shapely.box(*source.bounds)
    shapes = shapely.from_wkb(geometry)
    scores = fields[meta["fields"].tolist().index("score")]
    assert (scores >= 0.05).all()
    assert shapely.covers(footprint.buffer(1e-6), shapes).all()
    assert f"{len(shapes)} objects" in output
