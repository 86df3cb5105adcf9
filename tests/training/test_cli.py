"""The CLI as a user runs it: ``python -m training ...`` in a subprocess, one per config.

The three fast_dev_run fits start together (one fixture) so they overlap on a 2-core machine.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from training import cli

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
FAST = ["--trainer.fast_dev_run=true", "--data.init_args.num_workers=0"]
# The configs cli_fits fits (the Kampala ones where the real data is): the docs test
# (tests/e2e/test_readme_commands.py) lets the README fit only these, instead of fitting again.
FITTED_CONFIGS = (
    "chips_segmentation",
    "image_folder_classification",
    "kampala_buildings",
    "kampala_instances",
)
REAL_DATA_CONFIGS = {"kampala_buildings", "kampala_instances"}


@pytest.fixture(scope="session")
def cli_fits(chips_folder, photo_folder, start_training, tmp_path_factory):
    """Started ``fit`` processes by config name (Kampala only where the real data is)."""
    work = tmp_path_factory.mktemp("cli_runs")
    cache = str(work / "cache")
    runs = {
        "chips_segmentation": [
            f"--data.init_args.root={chips_folder}",
            f"--data.init_args.cache_dir={cache}",
        ],
        "image_folder_classification": [
            f"--data.init_args.root={photo_folder}",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=4",
            f"--data.init_args.cache_dir={cache}",
        ],
    }
    if SHARED_DATA.is_dir():
        kampala = SHARED_DATA / "fair_kampala_buildings"
        runs["kampala_buildings"] = [
            f"--data.init_args.raster={kampala / 'tiles' / 'OAM-*.tif'}",
            f"--data.init_args.labels={kampala / 'buildings.geojson'}",
            "--data.init_args.chip_size=64",
            "--data.init_args.block_size=256",
            "--data.init_args.batch_size=2",
            # the released net as configured: EfficientNet-Lite0 U-Net from the bundled ImageNet weights
            f"--data.init_args.cache_dir={cache}",
        ]
        runs["kampala_instances"] = [
            f"--data.init_args.raster={kampala / 'tiles' / 'OAM-*.tif'}",
            f"--data.init_args.labels={kampala / 'buildings.geojson'}",
            "--data.init_args.batch_size=2",
            f"--data.init_args.cache_dir={cache}",
        ]
    assert set(runs) | REAL_DATA_CONFIGS == set(FITTED_CONFIGS)  # Kampala: with the real data only
    return {
        name: start_training(["fit", "--config", str(CONFIGS / f"{name}.yaml"), *FAST, *extra], work)
        for name, extra in runs.items()
    } | {"work": work}


def _finished(process, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def test_fit_chips_segmentation_config(cli_fits):
    output = _finished(cli_fits["chips_segmentation"])
    assert "val_iou" in output and "`Trainer.fit` stopped" in output


def test_fit_image_folder_config(cli_fits):
    output = _finished(cli_fits["image_folder_classification"])
    assert "val_accuracy" in output and "`Trainer.fit` stopped" in output


def test_fit_raster_vector_config_on_kampala_buildings(cli_fits):
    if "kampala_buildings" not in cli_fits:
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    output = _finished(cli_fits["kampala_buildings"])
    assert "val_iou" in output and "`Trainer.fit` stopped" in output
    # fast_dev_run writes no logs, checkpoints or config into the working folder
    assert not (cli_fits["work"] / "runs").exists()


def test_fit_instance_config_on_kampala_buildings(cli_fits):
    if "kampala_instances" not in cli_fits:
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    output = _finished(cli_fits["kampala_instances"])
    # Mask R-CNN's losses (masks included) and COCO mAP of boxes and masks on the validation block
    assert "train_loss_mask" in output or "val_segm_map" in output
    assert "val_map50" in output and "`Trainer.fit` stopped" in output


def test_help_lists_every_subcommand(run_training, tmp_path):
    code, output = run_training(["--help"], tmp_path, timeout=60)
    assert code == 0
    for command in ("fit", "validate", "test", "export", "evaluate", "explain", "predict"):
        assert f"\n  {command} " in output, command
    for config in (
        "chips_segmentation",
        "kampala_buildings",
        "aber_landcover",
        "image_folder_classification",
    ):
        assert config in output


def test_unknown_command_fails_with_usage(capsys):
    assert cli.main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.DISPATCHED))
def test_other_commands_are_dispatched_with_their_arguments(command, monkeypatch):
    received = []
    module = types.ModuleType(f"training.{command}")
    module.main = lambda argv: received.append(argv) or 0
    monkeypatch.setitem(sys.modules, f"training.{command}", module)
    assert cli.main([command, "--checkpoint", "best.ckpt", "--output", "out"]) == 0
    assert received == [["--checkpoint", "best.ckpt", "--output", "out"]]


def test_a_missing_command_module_says_so(monkeypatch, capsys):
    def missing(name):
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert cli.main(["explain", "--checkpoint", "x.ckpt"]) == 2
    assert "training.explain is missing" in capsys.readouterr().err


def test_precision_is_32_bit_on_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.auto_precision("auto") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert cli.auto_precision("auto") == "16-mixed"
    assert cli.auto_precision("cpu") == "32-true"


def test_cli_validate_restores_a_checkpoint(trained, chips_folder, tmp_path, monkeypatch, capsys):
    """``--ckpt_path`` hands the saved hyperparameters back to the task's ``__init__``."""
    _, _, path = trained
    monkeypatch.chdir(tmp_path)
    arguments = [
        "validate",
        "--config",
        str(CONFIGS / "chips_segmentation.yaml"),
        f"--data.init_args.root={chips_folder}",
        "--data.init_args.num_workers=0",
        f"--data.init_args.cache_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--ckpt_path={path}",
    ]
    assert cli.main(arguments) == 0
    assert "val_iou_building" in capsys.readouterr().out
