"""Export: ONNX/torch parity within the stated tolerance, loud failures that leave no file, the spec
round trip through the plugin's reader, the exported model run by the plugin's tiled engine, a
fixed height and width by default (--dynamic for any size), and --from-onnx, which fixes the size
of a file exported dynamic."""

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


def dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_onnx_export_matches_torch_and_carries_the_whole_spec(tmp_path):
    net = fcn()
    path = tmp_path / "seg.onnx"
    result = export_onnx(net, SPEC, path)

    # By default height and width are the spec's tile size (Deepness's dock widget reads them as
    # the tile size) and the batch is dynamic.
    assert result.max_abs_diff <= DEFAULT_TOLERANCE and not result.dynamic_size
    model = onnx.load(str(path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert dims(model.graph.input[0]) == ["batch", 3, 32, 32]
    assert dims(model.graph.output[0]) == ["batch", 3, 32, 32]
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
    assert read.training["export"]["dynamic_size"] is False
    backend = load_model(path, device="cpu")
    assert backend.input_size == (32, 32) and backend.fixed_batch is None

    # Independent of export's own check: onnxruntime directly, at a batch it never checked.
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=DEFAULT_TOLERANCE)


def test_dynamic_export_takes_any_height_and_width(tmp_path):
    net = fcn()
    result = export_onnx(net, SPEC, tmp_path / "seg.onnx", dynamic_size=True)
    assert result.dynamic_size and result.max_abs_diff <= DEFAULT_TOLERANCE
    assert [3, 32, 32] in [list(shape[1:]) for shape in result.checked_shapes]
    assert [1, 3, 64, 64] in [list(shape) for shape in result.checked_shapes]  # twice the size
    model = onnx.load(str(result.path))
    assert dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert dims(model.graph.output[0]) == ["batch", 3, "output_height", "output_width"]
    assert load_model(result.path, device="cpu").spec.training["export"]["dynamic_size"] is True

    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=DEFAULT_TOLERANCE)


class FixedSizeSegmentation(nn.Module):
    """Per-pixel logits through a dense layer over the whole tile: runs at one size only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.dense = nn.Linear(3 * 32 * 32, 3 * 32 * 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x.flatten(1)).view(-1, 3, 32, 32)


@pytest.mark.parametrize(
    ("make_net", "spec", "reason"),
    [
        (
            classifier,
            dataclasses.replace(
                SPEC, model_type=ModelType.CLASSIFIER, class_names={0: "a", 1: "b"}, class_colors={}
            ),
            "a Classifier labels crops",
        ),
        (FixedSizeSegmentation, SPEC, "it fails on a 64 x 64 px tile"),
    ],
)
@pytest.mark.parametrize("export", [export_onnx, export_torchscript])
def test_dynamic_is_refused_for_nets_that_run_at_one_size(tmp_path, make_net, spec, reason, export):
    with pytest.raises(ExportError, match=f"--dynamic .*{reason}.*Drop --dynamic") as refused:
        export(make_net(), spec, tmp_path / "x.model", dynamic_size=True)
    assert "fixed 32 x 32 px" in str(refused.value)
    assert list(tmp_path.iterdir()) == []
    assert not export(make_net(), spec, tmp_path / "x.model").dynamic_size  # the default works


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
    printed = capsys.readouterr().out
    assert "max |exported - torch|" in printed and "height/width fixed 24 x 24" in printed
    for path in (output, output.with_suffix(".pt")):
        assert load_model(path, device="cpu").spec.tile_size == 24
    assert dims(onnx.load(str(output)).graph.input[0]) == ["batch", 3, 24, 24]

    dynamic = tmp_path / "models" / "dynamic.onnx"
    assert main(["--checkpoint", "best.ckpt", "--output", str(dynamic), "--dynamic"]) == 0
    assert "height/width dynamic" in capsys.readouterr().out
    assert dims(onnx.load(str(dynamic)).graph.input[0]) == ["batch", 3, "height", "width"]

    monkeypatch.setattr(
        "training.checkpoints.load_checkpoint_net", lambda path: (FixedSizeSegmentation(), SPEC)
    )
    assert main(["--checkpoint", "best.ckpt", "--output", str(tmp_path / "one_size.onnx"), "--dynamic"]) == 1
    assert "Drop --dynamic" in capsys.readouterr().err
    assert not (tmp_path / "one_size.onnx").exists()

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
    ("architecture", "model_type", "dynamic"),
    [
        ("fasterrcnn_mobilenet_v3", ModelType.DETECTOR, False),
        ("maskrcnn_mobilenet_v3", ModelType.INSTANCE_SEGMENTOR, True),
    ],
)
def test_detector_export_round_trip(architecture, model_type, dynamic, tmp_path):
    """Detectors: batch 1; height and width fixed at the tile size by default, any with --dynamic
    (then --from-onnx fixes the file, with the same detections)."""
    from rsdl_qgis_plugin.inference.detector import ObjectDecoder
    from training.export import DETECTION_TOLERANCES
    from training.nets.detection import RsdlLayout, build_detector
    from training.onnx_fixed_size import fix_onnx_size

    torch.manual_seed(0)
    net = build_detector(architecture, 2, chip_size=64, box_detections_per_img=25).eval()
    spec = detector_spec(model_type)
    result = export_onnx(net, spec, tmp_path / "det.onnx", dynamic_size=dynamic)
    assert result.dynamic_size is dynamic and result.max_abs_diff <= max(DETECTION_TOLERANCES.values())

    backend = load_model(result.path, device="cpu")
    assert backend.fixed_batch == 1 and backend.input_size == ((None, None) if dynamic else (64, 64))
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
    height, width = (96, 80) if dynamic else (64, 64)
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(7))
    x[:, 0, 20:40, 10:30] += 2.0
    got = backend.run(x.numpy())  # batch 2 runs as two chunks of the fixed batch 1
    with torch.no_grad():
        expected = [t.numpy() for t in RsdlLayout(net)(x)]
    for have, want in zip(got, expected):
        assert have.shape == want.shape
    decoded = decoder.decode(got, 0.05, 0.5, False, height)
    oracle = decoder.decode(expected, 0.05, 0.5, False, height)
    assert sum(len(d.boxes) for d in oracle) > 0
    for mine, theirs in zip(decoded, oracle):
        np.testing.assert_allclose(mine.boxes, theirs.boxes, atol=DETECTION_TOLERANCES["boxes"])
        np.testing.assert_allclose(mine.scores, theirs.scores, atol=DETECTION_TOLERANCES["scores"])
        np.testing.assert_array_equal(mine.class_ids, theirs.class_ids)
        if model_type is ModelType.INSTANCE_SEGMENTOR:
            assert [m.pixel_count for m in mine.masks] == [m.pixel_count for m in theirs.masks]

    fixed = fix_onnx_size(result.path, tmp_path / "fixed.onnx")
    if not dynamic:
        assert not fixed.written and not (tmp_path / "fixed.onnx").exists()
        return
    assert fixed.written and fixed.max_abs_diff <= max(DETECTION_TOLERANCES.values())
    model = onnx.load(str(fixed.path))
    assert dims(model.graph.input[0]) == [1, 3, 64, 64]
    assert dims(model.graph.output[3]) == [1, 25, 64, 64]  # the masks followed the input
    reread = load_model(fixed.path, device="cpu")
    assert reread.input_size == (64, 64) and reread.fixed_batch == 1
    assert reread.spec.training["export"]["dynamic_size"] is False
    assert reread.spec.training["export"]["rows"] == 25  # the rest of the export entry is kept


def test_detector_torchscript_export_is_refused(tmp_path):
    from training.nets.detection import build_detector

    net = build_detector("fasterrcnn_mobilenet_v3", 2, chip_size=64)
    with pytest.raises(ExportError, match="export it to ONNX"):
        export_torchscript(net, detector_spec(ModelType.DETECTOR), tmp_path / "det.pt")
    assert list(tmp_path.iterdir()) == []


# -- --from-onnx: fix the size of a file exported dynamic ----------------------------------------


def dynamic_file(folder: Path, spec: ModelSpec = SPEC) -> Path:
    return export_onnx(fcn(), spec, folder / "dynamic.onnx", dynamic_size=True).path


def outputs_of(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("in_place", [False, True])
def test_from_onnx_fixes_a_dynamic_file_with_identical_outputs(tmp_path, capsys, in_place):
    source = dynamic_file(tmp_path)
    before = source.read_bytes()
    output = source if in_place else tmp_path / "out" / "fixed.onnx"
    assert main(["--from-onnx", str(source), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "input [batch, 3, 32, 32], was [batch, 3, height, width]" in printed
    assert "max |fixed - dynamic| = 0.00e+00" in printed
    assert leftover_temporaries(output.parent) == []

    model, original = onnx.load(str(output)), onnx.load_from_string(before)
    onnx.checker.check_model(model, full_check=True)
    assert dims(model.graph.input[0]) == ["batch", 3, 32, 32]
    assert dims(model.graph.output[0]) == ["batch", 3, 32, 32]
    assert model.graph.node == original.graph.node and model.graph.initializer == original.graph.initializer
    props = {p.key: p.value for p in model.metadata_props}
    original_props = {p.key: p.value for p in original.metadata_props}
    assert {k for k in props if props[k] != original_props.get(k)} == {"training"}

    # The spec as the plugin reads it: the source's, but the export entry says fixed (and how).
    read, source_spec = load_model(output, device="cpu").spec, ModelSpec.from_metadata(original_props)
    assert dataclasses.replace(read, training={}) == dataclasses.replace(source_spec, training={})
    export = read.training.pop("export")
    source_export = source_spec.training.pop("export")
    assert read.training == source_spec.training
    assert source_export["dynamic_size"] is True and export["dynamic_size"] is False
    assert export["fixed_from_dynamic"]["input"] == ["batch", 3, "height", "width"]
    assert {k: v for k, v in export.items() if k not in ("dynamic_size", "fixed_from_dynamic")} == {
        k: v for k, v in source_export.items() if k != "dynamic_size"
    }

    # Independent of the fixer's own check: onnxruntime on both files, at batches it never checked.
    source_copy = tmp_path / "source_copy.onnx"
    source_copy.write_bytes(before)
    for batch in (2, 5):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        np.testing.assert_array_equal(outputs_of(output, x), outputs_of(source_copy, x))


@pytest.mark.parametrize("in_place", [False, True])
def test_from_onnx_leaves_a_fixed_file_alone(tmp_path, capsys, in_place):
    source = export_onnx(fcn(), SPEC, tmp_path / "fixed.onnx").path
    before, modified = source.read_bytes(), source.stat().st_mtime_ns
    output = source if in_place else tmp_path / "other.onnx"
    assert main(["--from-onnx", str(source), "--output", str(output)]) == 0
    assert (
        "already has a fixed input [batch, 3, 32, 32]; left alone, nothing written" in capsys.readouterr().out
    )
    assert source.read_bytes() == before and source.stat().st_mtime_ns == modified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.onnx"]


def without_props(path: Path, keys: set[str], folder: Path) -> Path:
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    target = folder / f"without_{len(keys)}.onnx"
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda folder: folder / "missing.onnx", "does not exist"),
        (lambda folder: folder / "not_a_model.onnx", "not an ONNX file"),
        (lambda folder: folder / "seg.pt", "not an ONNX file"),
        (
            lambda folder: without_props(dynamic_file(folder), {"rsdl_spec_version"}, folder),
            "is not an rsdl model",
        ),
        (
            lambda folder: without_props(dynamic_file(folder), {"tile_size", "tiles_size"}, folder),
            "has no tile_size",
        ),
    ],
    ids=["missing", "text", "torchscript", "not_rsdl", "no_tile_size"],
)
def test_from_onnx_refuses_what_it_cannot_fix(tmp_path, capsys, make_source, message):
    (tmp_path / "not_a_model.onnx").write_text("This is a text file, not a model.\n")
    export_torchscript(fcn(), SPEC, tmp_path / "seg.pt")
    source = make_source(tmp_path)
    output = tmp_path / "out" / "fixed.onnx"
    assert main(["--from-onnx", str(source), "--output", str(output)]) == 1
    error = capsys.readouterr().err
    assert message in error and error.startswith("export failed: --from-onnx")
    assert not output.exists() and leftover_temporaries(tmp_path) == []


def test_from_onnx_takes_only_an_output(tmp_path, capsys):
    source = dynamic_file(tmp_path)
    assert main(["--from-onnx", str(source), "--output", str(source), "--dynamic", "--tile-size", "64"]) == 1
    assert "--from-onnx takes only --output; --tile-size, --dynamic apply" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not allowed with --checkpoint
        main(["--from-onnx", str(source), "--checkpoint", "best.ckpt", "--output", str(source)])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("in_place", [False, True])
def test_from_onnx_never_leaves_a_half_written_file(tmp_path, monkeypatch, capsys, in_place):
    """A check that fails after the fixed file is written (here: its outputs, made to disagree)
    leaves the output as it was and no temporary file."""
    from training import onnx_fixed_size

    source = dynamic_file(tmp_path)
    output = source if in_place else tmp_path / "fixed.onnx"
    if not in_place:
        output.write_bytes(b"an older model")
    before = output.read_bytes()

    def disagree(*args, **kwargs):
        raise ExportError("The fixed-size model disagrees with the dynamic source file (simulated).")

    monkeypatch.setattr(onnx_fixed_size, "compare_outputs", disagree)
    assert main(["--from-onnx", str(source), "--output", str(output)]) == 1
    assert "disagrees with the dynamic source file" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert leftover_temporaries(tmp_path) == []
