"""checkpoints: nets and specs rebuilt from checkpoint files read with ``weights_only=True`` only."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from training.checkpoints import (
    HPARAMS_KEY,
    load_checkpoint_net,
    load_datamodule,
    load_task,
    read_checkpoint,
)
from training.data import ChipsDataModule
from training.tasks import SegmentationTask
from training.tasks.base import SPEC_KEY

SPEC = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names={0: "background", 1: "building", 2: "water"},
    bands=(1, 2, 3),
    tile_size=32,
)


def save_checkpoint(path: Path, task: SegmentationTask, spec: ModelSpec | None = SPEC) -> Path:
    """What Lightning writes, reduced to what rsdl reads: state dict, hyperparameters, spec."""
    content = {"state_dict": task.state_dict(), HPARAMS_KEY: dict(task.hparams)}
    if spec is not None:
        content[SPEC_KEY] = spec.to_metadata()
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def task() -> SegmentationTask:
    torch.manual_seed(0)
    built = SegmentationTask(num_classes=3, in_channels=3, encoder="resnet18")
    with torch.no_grad():  # weights unlike a fresh net's, so a load that kept fresh ones would show
        for parameter in built.net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return built.eval()


def test_the_net_and_spec_come_back_with_the_saved_weights(task, tmp_path):
    path = save_checkpoint(tmp_path / "best.ckpt", task)

    net, spec = load_checkpoint_net(path)

    assert not net.training and spec.class_names == SPEC.class_names and spec.tile_size == 32
    assert spec.model_type is ModelType.SEGMENTOR and spec.bands == (1, 2, 3)
    for name, value in task.net.state_dict().items():
        assert torch.equal(net.state_dict()[name], value), name
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(image), task.net(image))
    fresh = SegmentationTask(num_classes=3, in_channels=3, encoder="resnet18").eval()
    with torch.no_grad():
        assert not torch.allclose(fresh.net(image), task.net(image))


def test_load_task_rebuilds_the_saved_class_and_hyperparameters(task, tmp_path):
    loaded = load_task(save_checkpoint(tmp_path / "best.ckpt", task))
    assert type(loaded) is SegmentationTask and not loaded.training
    assert loaded.hparams.encoder == "resnet18" and loaded.hparams.num_classes == 3


class Planted:
    """An object whose unpickling would create a file: reading the checkpoint must not run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_object_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "planted.ckpt"
    torch.save({"state_dict": {}, "payload": Planted(marker)}, path)

    with pytest.raises(pickle.UnpicklingError, match=r"[Ww]eights only load failed"):
        read_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_net(path)
    assert not marker.exists()


def test_unknown_classes_and_missing_files_are_refused(task, tmp_path):
    path = tmp_path / "foreign.ckpt"
    hparams = {**dict(task.hparams), "_class_path": "somewhere.else.EvilTask"}
    torch.save({"state_dict": task.state_dict(), HPARAMS_KEY: hparams}, path)
    with pytest.raises(ValueError, match="names task 'EvilTask'"):
        load_checkpoint_net(path)
    with pytest.raises(FileNotFoundError, match=r"does not exist\. That folder holds: foreign\.ckpt"):
        load_checkpoint_net(tmp_path / "absent.ckpt")


def test_a_missing_checkpoint_is_one_line_from_the_commands(tmp_path, capsys):
    """Export, evaluate and explain report a mistyped checkpoint name (and the ones that exist) as bad
    input, not with a traceback."""
    from training.evaluate import main as evaluate_main
    from training.export import main as export_main

    (tmp_path / "best-024-0.1901.ckpt").write_bytes(b"")
    missing = str(tmp_path / "best-024-0.1900.ckpt")
    assert export_main(["--checkpoint", missing, "--output", str(tmp_path / "m.onnx")]) == 1
    assert "export failed: Checkpoint" in capsys.readouterr().err
    config = tmp_path / "fit.yaml"
    config.write_text("data: {}\n")
    assert (
        evaluate_main(["--checkpoint", missing, "--config", str(config), "--output", str(tmp_path / "e")])
        == 1
    )
    assert "holds: best-024-0.1901.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


# -- checkpoints of a real fit (the session's ``trained`` fixture) -------------------------------------


def test_load_task_round_trip(trained):
    task, data, path = trained
    loaded = load_task(path)
    assert isinstance(loaded, SegmentationTask) and not loaded.training
    batch = next(iter(data.val_dataloader()))
    task.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.net(batch["image"]), task.net(batch["image"]), atol=1e-6)
    assert loaded.model_spec() == task.model_spec()


def test_load_datamodule_uses_the_checkpoint_normalisation(trained, tmp_path):
    _, data, path = trained
    rebuilt = load_datamodule(path, cache_dir=str(tmp_path))
    assert isinstance(rebuilt, ChipsDataModule)
    rebuilt.setup("validate")
    assert rebuilt.model_spec().standardization_std == data.model_spec().standardization_std
    assert len(rebuilt.datasets["val"]) == len(data.datasets["val"])
