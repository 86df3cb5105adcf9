"""Export: ONNX/torch parity within the stated tolerance, loud failures that leave no file, the spec
round trip through the plugin's reader, and the exported model run by the plugin's tiled engine."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.tiling.blending import BlendMode
from rsdl_qgis_plugin.inference.backends import ModelFormat, load_model
from rsdl_qgis_plugin.inference.engine import InferenceSettings, TiledInference
from training.export import DEFAULT_TOLERANCE, ExportError, export_onnx, export_torchscript, main

REPO = Path(__file__).resolve().parents[2]
RADIUS = 2  # two 3x3 convolutions
SPEC = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names={0: "background", 1: "building", 2: "water"},
    class_colors={0: "#000000", 1: "#e31a1c", 2: "#1f78b4"},
    resolution_cm=30.0,
    tile_size=32,
    tiles_overlap_percent=25.0,
    standardization_mean=(0.485, 0.456, 0.406),
    standardization_std=(0.229, 0.224, 0.225),
    bands=(3, 2, 1),
    ignore_index=255,
    training={
        "metrics": {"val_iou": 0.71, "val_iou_per_class": [0.9, 0.6, 0.63]},
        "data": {"source": "chips/kampala", "split": "spatial", "tiles": (120, 30)},
    },
)


def fcn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


def classifier() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


class TamperedOnExport(nn.Module):
    """Gives other outputs while being exported or traced: the file disagrees with the net."""

    def __init__(self) -> None:
        super().__init__()
        self.net = fcn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            y = y + 1e-3
        return y


def without_export(spec: ModelSpec) -> dict:
    return {k: v for k, v in spec.training.items() if k != "export"}


def test_onnx_export_matches_torch_and_carries_the_whole_spec(tmp_path):
    net = fcn()
    path = tmp_path / "seg.onnx"
    result = export_onnx(net, SPEC, path)

    assert result.max_abs_diff <= DEFAULT_TOLERANCE and result.dynamic_size
    model = onnx.load(str(path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    metadata = {p.key: p.value for p in model.metadata_props}
    for key in ("class_names", "class_colors", "bands", "standardization_mean", "standardization_std"):
        assert key in metadata
    assert json.loads(metadata["tile_size"]) == 32 and json.loads(metadata["resolution"]) == 30.0
    assert json.loads(metadata["training"])["metrics"]["val_iou"] == 0.71

    # The plugin's reader gives back the spec exported: every field as given, plus export provenance.
    read = load_model(path, device="cpu").spec
    assert read == result.spec
    for field in dataclasses.fields(ModelSpec):
        if field.name != "training":
            assert getattr(read, field.name) == getattr(SPEC, field.name), field.name
    assert without_export(read) == json.loads(json.dumps(SPEC.training))
    assert read.training["export"]["opset"] == 17
    assert read.training["export"]["tolerance"] == DEFAULT_TOLERANCE

    # Independent of export's own check: onnxruntime directly, at a batch and size it never checked.
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=DEFAULT_TOLERANCE)


@pytest.mark.parametrize("export", [export_onnx, export_torchscript])
def test_an_export_that_disagrees_with_torch_fails_loudly_and_writes_nothing(tmp_path, export):
    fresh, existing = tmp_path / "fresh.model", tmp_path / "existing.model"
    existing.write_bytes(b"an older model")
    for path in (fresh, existing):
        with pytest.raises(
            ExportError, match=r"difference of output 1 is 0\.001, above the stated tolerance of 0\.0001"
        ):
            export(TamperedOnExport(), SPEC, path)
    assert not fresh.exists()
    assert existing.read_bytes() == b"an older model"
    assert leftover_temporaries(tmp_path) == []


def test_tolerance_is_the_stated_bound(tmp_path):
    """The same tampered net passes when the stated tolerance admits its 1e-3 difference."""
    result = export_onnx(TamperedOnExport(), SPEC, tmp_path / "loose.onnx", tolerance=2e-3)
    assert 0.9e-3 < result.max_abs_diff <= 2e-3


def test_classifier_export_has_a_dynamic_batch_and_a_fixed_tile(tmp_path):
    spec = ModelSpec(
        model_type=ModelType.CLASSIFIER,
        class_names={0: "intact", 1: "damaged"},
        tile_size=24,
        bands=(1, 2, 3),
    )
    net = classifier()
    result = export_onnx(net, spec, tmp_path / "cls.onnx")
    assert not result.dynamic_size
    backend = load_model(result.path, device="cpu")
    assert backend.input_size == (24, 24) and backend.fixed_batch is None
    x = torch.randn(5, 3, 24, 24)
    with torch.no_grad():
        np.testing.assert_allclose(backend.run(x.numpy())[0], net(x).numpy(), atol=DEFAULT_TOLERANCE)


def test_torchscript_export_loads_in_the_plugin_with_its_spec(tmp_path):
    net = fcn()
    result = export_torchscript(net, SPEC, tmp_path / "seg.pt")
    backend = load_model(result.path, device="cpu")
    assert backend.format == ModelFormat.TORCHSCRIPT
    assert backend.spec == result.spec and without_export(backend.spec) == json.loads(
        json.dumps(SPEC.training)
    )
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        np.testing.assert_allclose(backend.run(x.numpy())[0], net(x).numpy(), atol=DEFAULT_TOLERANCE)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (dataclasses.replace(SPEC, bands=None), "lists no 'bands'"),
        (dataclasses.replace(SPEC, training={"data": {"path": object()}}), "cannot be written as JSON"),
    ],
)
def test_unusable_specs_are_refused_before_any_file(tmp_path, spec, message):
    with pytest.raises(ExportError, match=message):
        export_onnx(fcn(), spec, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


class Collect:
    def __init__(self, channels: int, height: int, width: int) -> None:
        self.values = np.full((channels, height, width), np.nan, dtype=np.float32)

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        self.values[:, first_row : first_row + values.shape[1]] = values


class ArrayReader:
    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def read(self, row, col, rows, cols):
        data = self.image[:, row : row + rows, col : col + cols].astype(np.float32)
        return data, np.ones(data.shape[1:], dtype=bool)


def test_exported_onnx_runs_through_the_plugin_engine(tmp_path):
    """Oracle: one torch forward pass over the whole (reflect-padded) image; the engine's tiles
    blend to it exactly when each tile keeps only its centre and the overlap covers the radius."""
    net = fcn()
    path = export_onnx(net, SPEC, tmp_path / "seg.onnx").path
    image = np.random.default_rng(2).integers(0, 256, (3, 70, 90)).astype(np.float32)
    backend = load_model(path, device="cpu")
    settings = InferenceSettings(tile_size=32, overlap=8, batch_size=3, blend_mode=BlendMode.CENTRE_CROP)
    engine = TiledInference(backend, backend.spec, (1, 2, 3), settings, 90, 70)
    sink = Collect(3, 70, 90)
    counts = engine.run(lambda: ArrayReader(image), [sink])

    padded = np.pad(image, ((0, 0), (RADIUS, RADIUS), (RADIUS, RADIUS)), mode="reflect")
    with torch.no_grad():
        logits = net(torch.from_numpy(SPEC.normalize(padded))[None])[0]
    expected = torch.softmax(logits, dim=0).numpy()[:, RADIUS:-RADIUS, RADIUS:-RADIUS]
    assert counts["run"] == counts["tiles"] > 4
    np.testing.assert_allclose(sink.values, expected, atol=1e-5)


def test_main_writes_both_formats_from_a_checkpoint(tmp_path, monkeypatch, capsys):
    """The command line as `python -m training export` runs it; the checkpoint loader is stubbed
    here (it is the task side's), the CLI subprocess test covers the real one."""
    monkeypatch.setattr("training.checkpoints.load_checkpoint_net", lambda path: (fcn(), SPEC))
    output = tmp_path / "models" / "seg.onnx"
    args = ["--checkpoint", "best.ckpt", "--output", str(output), "--format", "both", "--tile-size", "24"]
    assert main(args) == 0
    assert "max |exported - torch|" in capsys.readouterr().out
    for path in (output, output.with_suffix(".pt")):
        assert load_model(path, device="cpu").spec.tile_size == 24

    monkeypatch.setattr("training.checkpoints.load_checkpoint_net", lambda path: (TamperedOnExport(), SPEC))
    assert main(["--checkpoint", "best.ckpt", "--output", str(tmp_path / "bad.onnx")]) == 1
    assert "above the stated tolerance" in capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_fit_then_export_as_a_user_runs_it(tmp_path):
    """`python -m training fit` on tiny photos, then `python -m training export` on its checkpoint.

    One epoch of one batch rather than fast_dev_run: fast_dev_run disables checkpointing, and
    export needs the checkpoint a real fit leaves.
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, channel in (("damaged", 0), ("intact", 2)):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for index in range(5):
            pixels = rng.integers(0, 100, (40, 40, 3)).astype(np.uint8)
            pixels[..., channel] += 120
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{index}.png")
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}

    def training(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "training", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    fit = training(
        "fit",
        "--config",
        str(REPO / "training" / "configs" / "image_folder_classification.yaml"),
        "--data.init_args.root=photos",
        "--data.init_args.image_size=32",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--model.init_args.backbone=mobilenet_v3_small",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = next((tmp_path / "runs").rglob("last.ckpt"))

    export = training(
        "export", "--checkpoint", str(checkpoint), "--output", "models/cls.onnx", "--format", "both"
    )
    assert export.returncode == 0, export.stderr[-3000:]
    assert "max |exported - torch|" in export.stdout
    onnx_spec = load_model(tmp_path / "models" / "cls.onnx", device="cpu").spec
    script_spec = load_model(tmp_path / "models" / "cls.pt", device="cpu").spec
    assert onnx_spec.model_type is ModelType.CLASSIFIER and onnx_spec.tile_size == 32
    assert onnx_spec.class_names == {0: "damaged", 1: "intact"} and onnx_spec.bands == (1, 2, 3)
    assert {"hyperparameters", "export"} <= set(onnx_spec.training)
    assert without_export(onnx_spec) == without_export(script_spec)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_logits_are_exported_as_probabilities(activation, tmp_path):
    """The plugin reads probabilities: a task's logits get the task's activation in the graph."""
    net = fcn() if activation == "softmax" else nn.Sequential(fcn(), nn.Conv2d(3, 1, 1))
    training = {"output": "logits", "output_activation": activation}
    classes = SPEC.class_names if activation == "softmax" else {0: "building"}
    spec = dataclasses.replace(SPEC, class_names=classes, class_colors={}, training=training)
    path = tmp_path / f"{activation}.onnx"
    result = export_onnx(net, spec, path)
    assert result.spec.training["output"] == "probabilities"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = net.eval()(x)
    expected = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)
    session = onnxruntime.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert got.min() >= 0.0 and got.max() <= 1.0


# -- detectors: rsdl's detection layout ----------------------------------------------------------------


def detector_spec(model_type: ModelType) -> ModelSpec:
    return ModelSpec(
        model_type=model_type,
        class_names={0: "building", 1: "tree"},
        class_colors={0: "#e31a1c", 1: "#33a02c"},
        resolution_cm=30.0,
        tile_size=64,
        standardization_mean=(0.4, 0.4, 0.4),
        standardization_std=(0.2, 0.2, 0.2),
        bands=(1, 2, 3),
        det_conf=0.3,
        det_iou_thresh=0.5,
        training={"task": "detection", "output": "detections", "metrics": {"val_map50": 0.61}},
    )


@pytest.mark.parametrize(
    ("architecture", "model_type"),
    [
        ("fasterrcnn_mobilenet_v3", ModelType.DETECTOR),
        ("maskrcnn_mobilenet_v3", ModelType.INSTANCE_SEGMENTOR),
    ],
)
def test_detector_export_round_trip(architecture, model_type, tmp_path):
    from rsdl_qgis_plugin.inference.detector import ObjectDecoder
    from training.export import DETECTION_TOLERANCES
    from training.nets.detection import RsdlLayout, build_detector

    torch.manual_seed(0)
    net = build_detector(architecture, 2, chip_size=64, box_detections_per_img=25).eval()
    spec = detector_spec(model_type)
    result = export_onnx(net, spec, tmp_path / "det.onnx")
    assert result.dynamic_size and result.max_abs_diff <= max(DETECTION_TOLERANCES.values())

    backend = load_model(result.path, device="cpu")
    assert backend.fixed_batch == 1 and backend.input_size == (None, None)
    read = backend.spec
    assert read == result.spec and read.model_type is model_type
    assert (read.det_conf, read.det_iou_thresh, read.class_names) == (0.3, 0.5, spec.class_names)
    assert read.training["metrics"]["val_map50"] == 0.61 and read.training["export"]["rows"] == 25
    names = [o.name for o in backend.outputs]
    assert names == ["boxes", "scores", "class_ids"] + (
        ["masks"] if model_type is ModelType.INSTANCE_SEGMENTOR else []
    )
    assert [o.shape[1] for o in backend.outputs] == [25] * len(names)

    # Independently of export's own check: onnxruntime at a size it never checked, decoded by
    # rsdl:detect's decoder, gives the objects the torch net gives.
    decoder = ObjectDecoder.for_backend(backend)
    x = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(7))
    x[:, 0, 20:40, 10:30] += 2.0
    got = backend.run(x.numpy())  # batch 2 runs as two chunks of the fixed batch 1
    with torch.no_grad():
        expected = [t.numpy() for t in RsdlLayout(net)(x)]
    for have, want in zip(got, expected):
        assert have.shape == want.shape
    decoded = decoder.decode(got, 0.05, 0.5, False, 96)
    oracle = decoder.decode(expected, 0.05, 0.5, False, 96)
    assert sum(len(d.boxes) for d in oracle) > 0
    for mine, theirs in zip(decoded, oracle):
        np.testing.assert_allclose(mine.boxes, theirs.boxes, atol=DETECTION_TOLERANCES["boxes"])
        np.testing.assert_allclose(mine.scores, theirs.scores, atol=DETECTION_TOLERANCES["scores"])
        np.testing.assert_array_equal(mine.class_ids, theirs.class_ids)
        if model_type is ModelType.INSTANCE_SEGMENTOR:
            assert [m.pixel_count for m in mine.masks] == [m.pixel_count for m in theirs.masks]


def test_detector_torchscript_export_is_refused(tmp_path):
    from training.nets.detection import build_detector

    net = build_detector("fasterrcnn_mobilenet_v3", 2, chip_size=64)
    with pytest.raises(ExportError, match="export it to ONNX"):
        export_torchscript(net, detector_spec(ModelType.DETECTOR), tmp_path / "det.pt")
    assert list(tmp_path.iterdir()) == []
