"""python -m training compare: each run's row is its own evaluation, export and timing."""

from __future__ import annotations

import json

import pytest
import torch

from training.checkpoints import read_checkpoint
from training.compare import main, parse_run

from .test_evaluate import assert_png


@pytest.fixture(scope="module")
def two_checkpoints(trained, tmp_path_factory):
    """The session's fitted checkpoint and a copy whose classifier head is zeroed (one class wins
    everywhere), so the two rows must differ."""
    _, _, best = trained
    folder = tmp_path_factory.mktemp("compare_checkpoints")
    content = read_checkpoint(best)
    state = content["state_dict"]
    head = [key for key in state if key.startswith("net.segmentation_head") and key.endswith("weight")]
    assert head, sorted(state)[-5:]
    for key in head:
        state[key] = torch.zeros_like(state[key])
    other = folder / "zeroed_head.ckpt"
    torch.save(content, other)
    return best, other


@pytest.fixture()
def config(chips_folder, tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text(
        "data:\n  class_path: training.data.ChipsDataModule\n  init_args:\n"
        f"    root: {chips_folder}\n    batch_size: 4\n    cache_dir: {tmp_path / 'cache'}\n"
    )
    return path


def test_compare_writes_one_row_per_run_from_its_own_evaluation_and_export(two_checkpoints, config, tmp_path):
    trained, zeroed = two_checkpoints
    output = tmp_path / "comparison"
    arguments = ["--config", str(config), "--split", "val", "--output", str(output), "--timed-runs", "3"]
    assert main([*arguments, "--run", f"fitted={trained}", "--run", f"zeroed={zeroed}"]) == 0

    result = json.loads((output / "comparison.json").read_text())
    rows = {row["name"]: row for row in result["runs"]}
    assert list(rows) == ["fitted", "zeroed"] and result["split"] == "val"
    for name, row in rows.items():
        metrics = json.loads((output / name / "metrics.json").read_text())
        assert row["headline"] == "mean IoU" and row["headline_value"] == metrics["mean_iou"]
        assert row["per_class"] == {entry["name"]: entry["iou"] for entry in metrics["classes"]}
        onnx = output / name / "model.onnx"
        assert row["onnx_mb"] == pytest.approx(onnx.stat().st_size / 1e6)
        assert row["cpu_ms_per_chip"] > 0 and row["tile_size"] == 32
    fitted_state = read_checkpoint(trained)["state_dict"]
    assert rows["fitted"]["parameters"] == sum(
        t.numel() for k, t in fitted_state.items() if "running" not in k and "num_batches" not in k
    )
    # A zeroed head predicts one class everywhere: its IoU row cannot equal the fitted net's.
    assert rows["zeroed"]["per_class"] != rows["fitted"]["per_class"]

    table = (output / "comparison.md").read_text()
    assert table.count("\n| fitted |") == 1 and table.count("\n| zeroed |") == 1
    assert "iou building" in table and "CPU ms / chip" in table
    assert_png(output / "comparison.png")


def test_bad_runs_are_refused_before_any_work(two_checkpoints, config, tmp_path, capsys):
    trained, _ = two_checkpoints
    base = ["--config", str(config), "--output", str(tmp_path / "out")]
    assert main([*base, "--run", f"a={trained}", "--run", f"a={trained}"]) == 2
    assert "names must differ" in capsys.readouterr().err
    assert main([*base, "--run", f"a={trained}", "--run", f"b={tmp_path / 'missing.ckpt'}"]) == 2
    assert "missing.ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--run", "no-equals-sign"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(Exception, match="NAME=CHECKPOINT"):
        parse_run("=x.ckpt")
