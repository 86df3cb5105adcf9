"""Training curves (training/reports/curves.py) from a Lightning CSVLogger log: series from each
metric's own rows, one PNG per group that PIL decodes."""

from __future__ import annotations

import pytest
from PIL import Image

from rsdl_qgis_plugin.core.errors import RsdlError
from training.reports.curves import read_metrics_csv, write_training_curves

# What CSVLogger writes: one row per logging call, empty cells for metrics not logged in it.
LOG = """epoch,step,lr-AdamW,train_loss_step,val_loss,val_iou,train_loss_epoch
0,0,0.001,1.5,,,
0,1,0.001,1.25,,,
0,1,,,1.1,0.25,
0,1,,,,,1.375
1,2,0.0005,nan,,,
1,3,0.0005,0.75,,,
1,3,,,0.9,0.5,
"""


def test_each_metric_is_read_from_its_own_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(LOG, encoding="utf-8")
    series = read_metrics_csv(path)
    assert set(series) == {"lr-AdamW", "train_loss_step", "val_loss", "val_iou", "train_loss_epoch"}
    assert series["val_iou"] == ([1.0, 3.0], [0.25, 0.5])
    assert series["train_loss_step"] == ([0.0, 1.0, 3.0], [1.5, 1.25, 0.75])  # the NaN is left out
    assert series["lr-AdamW"] == ([0.0, 1.0, 2.0, 3.0], [0.001, 0.001, 0.0005, 0.0005])


def test_one_decodable_png_per_group(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(LOG, encoding="utf-8")
    (tmp_path / "plots").mkdir()
    written = write_training_curves(path, tmp_path / "plots")
    assert sorted(p.name for p in written) == [
        "training_learning_rate.png",
        "training_loss.png",
        "training_metrics.png",
    ]
    for png in written:
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300


def test_an_empty_log_is_refused(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,val_loss\n", encoding="utf-8")
    with pytest.raises(RsdlError, match="has no rows"):
        write_training_curves(path, tmp_path)
    assert not list(tmp_path.glob("*.png"))
