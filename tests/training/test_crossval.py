"""``python -m training crossval`` as a user runs it, on the tiny raster + vector scene: every fold
is fitted and evaluated, and the pooled matrix counts each labelled pixel exactly once (checked
against GDAL's own rasterization of the labels)."""

from __future__ import annotations

import json

import numpy as np

from tests.rasterize_cases import gdal_rasterize_oracle
from training.crossval import summary_table

CONFIG = """
trainer:
  max_epochs: 1
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {{save_dir: runs, name: cv}}
  enable_progress_bar: false
  limit_train_batches: 2
model:
  class_path: training.tasks.SegmentationTask
  init_args: {{encoder: resnet18, loss: ce, lr: 0.001}}
data:
  class_path: training.data.RasterVectorDataModule
  init_args:
    raster: {raster}
    labels: {labels}
    field: kind
    unlabelled: ignore
    chip_size: 32
    stride: 16
    block_size: 64
    folds: 2
    fold: 0
    batch_size: 4
    num_workers: 0
    cache_dir: {cache}
"""


def test_crossval_fits_evaluates_and_pools_every_fold(vector_scene, run_training, tmp_path):
    config = tmp_path / "cv.yaml"
    config.write_text(
        CONFIG.format(raster=vector_scene["raster"], labels=vector_scene["labels"], cache=tmp_path / "cache"),
        encoding="utf-8",
    )
    code, output = run_training(
        ["crossval", "--config", str(config), "--output", "cv", "--folds", "2", "--", "--seed_everything=3"],
        tmp_path,
        timeout=600,
    )
    assert code == 0, output[-4000:]
    document = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text(encoding="utf-8"))
    assert document["folds"] == 2 and len(document["per_fold"]) == 2
    assert (tmp_path / "cv" / "cv_confusion_matrix.png").stat().st_size > 1000
    reports = [tmp_path / "cv" / f"fold_{k}" / "evaluation" / "metrics.json" for k in range(2)]
    fold_matrices = [
        np.asarray(json.loads(path.read_text(encoding="utf-8"))["confusion_matrix"]["values"])
        for path in reports
    ]
    pooled = np.asarray(document["pooled"]["confusion_matrix"]["values"])
    assert np.array_equal(pooled, fold_matrices[0] + fold_matrices[1])
    assert all(m.sum() > 0 for m in fold_matrices), "each fold must hold out labelled pixels"
    # the folds partition the ground and held-out chips do not overlap: every labelled pixel once
    labelled = gdal_rasterize_oracle(vector_scene["labels"], vector_scene["raster"], 1)
    assert pooled.sum() == int(np.count_nonzero(labelled))
    assert [c["name"] for c in document["pooled"]["classes"]] == ["building", "water"]
    assert "| mean IoU |" in output and "pooled" in summary_table(document)


def test_crossval_refuses_fewer_than_two_folds(run_training, tmp_path):
    arguments = ["crossval", "--config", "x.yaml", "--output", "cv", "--folds", "1"]
    code, output = run_training(arguments, tmp_path)
    assert code == 2 and "--folds must be at least 2" in output
