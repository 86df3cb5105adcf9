#!/usr/bin/env python3
"""Generate the tiny models the inference tests run (never committed; tests write them to tmp).

    python scripts/make_test_models.py OUTDIR

All weights are fixed by a seed, so every run writes the same models. The networks are fully
convolutional: two 3x3 convolutions (padding 1) with ReLU, then one 1x1 convolution per output
head. The receptive field is therefore 5 x 5 pixels (``RECEPTIVE_FIELD_RADIUS`` = 2): an output
pixel depends only on input pixels at most 2 away, so a whole-image forward pass is an exact
oracle for tiled inference away from the image border. ONNX models are built with
``onnx.helper`` (opset ``OPSET``, IR version ``IR_VERSION``, readable by old onnxruntimes); the
TorchScript twins (``*.pt``, written only when torch is installed) hold the same weights.

Files (keys of the dict ``write_test_models`` returns):

* ``fcn_seg.onnx`` / ``fcn_seg.pt``: 3 bands -> 3-class softmax, dynamic batch, height, width;
  the rsdl spec ``SEG_SPEC`` (tile 64, overlap 25 %, ImageNet standardisation, bands 1,2,3).
* ``fcn_seg_batch2.onnx``: the same net with a fixed batch of 2 and fixed 64 x 64 tiles.
* ``fcn_regressor.onnx``: one raw float output channel, values well outside 0..1.
* ``fcn_two_heads.onnx`` / ``fcn_two_heads.pt``: a 3-class softmax head and a 1-channel sigmoid
  head (Deepness-style class names: a list of two dicts).
* ``fcn_no_metadata.onnx``: the segmentation net without any metadata.
* ``class_mismatch.onnx``: 3 output channels but 2 class names.
* ``two_inputs.onnx``, ``rank3_input.onnx``: inputs rsdl refuses.
* ``truncated.onnx``: the first half of fcn_seg.onnx; ``not_a_model.onnx``: text.
* ``evil.pth`` (a protocol-2 pickle, like a legacy torch.save) and ``evil_zip.pth`` (torch.save's
  zip layout): unpickling either creates the file ``EVIL_MARKER`` in OUTDIR.
* ``escape/escape.onnx``: external weights at ``../escape_weights.bin``, outside its folder.
* ``fcn_seg_64x48.onnx`` (a fixed non-square input), ``fcn_seg_33.onnx`` (a fixed odd tile of
  33 px, no tile_size in its spec), ``fcn_seg_downsampled.onnx`` (the segmentation net followed
  by a 2 x 2 average pool: an output half the tile's size, which no spec key explains).
* ``evil_torchscript.pt``: a zip laid out like TorchScript (``code/``) whose ``data.pkl`` is the
  marker pickle; ``escape/absolute.onnx`` (external data at an absolute path outside the folder)
  and ``escape/symlink.onnx`` (external data through a symlink in the folder that points out of
  it, written only where symlinks can be made).
* ``classifier.onnx``: a classifier (spec ``CLASSIFIER_SPEC``: classes 0 "intact", 1 "damaged",
  1 m resolution) on fixed 32 x 32 crops of 3 bands, dynamic batch: 1x1 convolution, global
  average pool, Gemm, Softmax -> [batch, 2]. Its weights are set by hand, not drawn: the logit of
  "damaged" minus that of "intact" is ``2 * CLASSIFIER_GAIN * (mean red - mean blue) / 255``, so
  a crop that is redder than blue is "damaged" and a bluer one "intact".
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rsdl_qgis_plugin.core.contract.model_spec import (  # noqa: E402
    TORCHSCRIPT_SPEC_FILE,
    ModelSpec,
    ModelType,
)

OPSET = 17
IR_VERSION = 8
RECEPTIVE_FIELD_RADIUS = 2
TILE = 64
EVIL_MARKER = "UNPICKLED_MARKER"
SEED = 20240601
HIDDEN = 8

SEG_CLASSES = {0: "background", 1: "building", 2: "water"}
SEG_SPEC = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names=SEG_CLASSES,
    class_colors={0: "#000000", 1: "#e31a1c", 2: "#1f78b4"},
    resolution_cm=50.0,
    tile_size=TILE,
    tiles_overlap_percent=25.0,
    standardization_mean=(0.485, 0.456, 0.406),
    standardization_std=(0.229, 0.224, 0.225),
    max_pixel_value=255.0,
    bands=(1, 2, 3),
    training={"note": "synthetic test model, random weights"},
)
TWO_HEADS_SPEC = ModelSpec(
    model_type=ModelType.SEGMENTOR,
    class_names=SEG_CLASSES,
    more_head_class_names=({0: "tree"},),
    tile_size=TILE,
    bands=(1, 2, 3),
)
REGRESSOR_SPEC = ModelSpec(
    model_type=ModelType.REGRESSOR, tile_size=TILE, tiles_overlap_percent=25.0, bands=(1, 2, 3)
)
CLASSIFIER_TILE = 32
CLASSIFIER_GAIN = 10.0
CLASSIFIER_SPEC = ModelSpec(
    model_type=ModelType.CLASSIFIER,
    class_names={0: "intact", 1: "damaged"},
    class_colors={0: "#1f78b4", 1: "#e31a1c"},
    resolution_cm=100.0,
    tile_size=CLASSIFIER_TILE,
    bands=(1, 2, 3),
)


@dataclass(frozen=True)
class Conv:
    """One convolution: weight (out, in, k, k) and bias (out,), float32; padding keeps the size."""

    weight: np.ndarray
    bias: np.ndarray

    @property
    def padding(self) -> int:
        return self.weight.shape[-1] // 2


@dataclass(frozen=True)
class Head:
    conv: Conv
    activation: str  # "softmax" (over channels), "sigmoid" or "none"


def _conv(
    rng: np.random.Generator, out: int, inp: int, kernel: int, gain: float = 1.0, bias: float = 0.0
) -> Conv:
    scale = gain * np.sqrt(2.0 / (inp * kernel * kernel))
    weight = rng.normal(0.0, scale, (out, inp, kernel, kernel)).astype(np.float32)
    return Conv(weight, (rng.normal(0.0, 0.1, out) + bias).astype(np.float32))


def _trunk(rng: np.random.Generator) -> list[Conv]:
    return [_conv(rng, HIDDEN, 3, 3), _conv(rng, HIDDEN, HIDDEN, 3)]


# -- ONNX -------------------------------------------------------------------------------------


def onnx_fcn(
    trunk: list[Conv],
    heads: list[Head],
    spec: ModelSpec | None,
    batch: int | str = "batch",
    size: int | str = "height",
) -> onnx.ModelProto:
    """The fully-convolutional net as ONNX; ``batch``/``size`` are fixed ints or dynamic names."""
    width = size if isinstance(size, int) else "width"
    nodes, initializers = [], []

    def add_conv(source: str, conv: Conv, name: str) -> str:
        initializers.append(numpy_helper.from_array(conv.weight, f"{name}_w"))
        initializers.append(numpy_helper.from_array(conv.bias, f"{name}_b"))
        nodes.append(
            helper.make_node("Conv", [source, f"{name}_w", f"{name}_b"], [name], pads=[conv.padding] * 4)
        )
        return name

    features = "input"
    for index, conv in enumerate(trunk):
        nodes.append(helper.make_node("Relu", [add_conv(features, conv, f"conv{index}")], [f"relu{index}"]))
        features = f"relu{index}"
    outputs = []
    for index, head in enumerate(heads):
        logits = add_conv(features, head.conv, f"head{index}")
        name = "output" if index == 0 else f"output{index + 1}"
        op = {"softmax": "Softmax", "sigmoid": "Sigmoid"}.get(head.activation, "Identity")
        attributes = {"axis": 1} if op == "Softmax" else {}
        nodes.append(helper.make_node(op, [logits], [name], **attributes))
        channels = head.conv.weight.shape[0]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, channels, size, width]))
    graph = helper.make_graph(
        nodes,
        "rsdl_test_fcn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, width])],
        outputs,
        initializers,
    )
    return _finish(graph, spec)


def _finish(graph: onnx.GraphProto, spec: ModelSpec | None) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="rsdl-tests",
    )
    if spec is not None:
        helper.set_model_props(model, spec.to_metadata())
    onnx.checker.check_model(model)
    return model


def onnx_classifier(spec: ModelSpec) -> onnx.ModelProto:
    """Conv 1x1 (blue - red, red - blue) -> GlobalAveragePool -> Flatten -> Gemm -> Softmax."""
    mix = np.array([[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], dtype=np.float32).reshape(2, 3, 1, 1)
    initializers = [
        numpy_helper.from_array(mix, "mix_w"),
        numpy_helper.from_array(np.zeros(2, dtype=np.float32), "mix_b"),
        numpy_helper.from_array(CLASSIFIER_GAIN * np.eye(2, dtype=np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(2, dtype=np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "mix_w", "mix_b"], ["mixed"]),
        helper.make_node("GlobalAveragePool", ["mixed"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["output"], axis=1),
    ]
    size = CLASSIFIER_TILE
    graph = helper.make_graph(
        nodes,
        "rsdl_test_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        initializers,
    )
    return _finish(graph, spec)


def _identity_model(inputs: list[list[int | str]]) -> onnx.ModelProto:
    """A model that refuses to be run by rsdl because of its inputs."""
    names = [f"input{i}" for i in range(len(inputs))]
    op = "Add" if len(inputs) == 2 else "Identity"
    graph = helper.make_graph(
        [helper.make_node(op, names, ["output"])],
        "rsdl_test_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in zip(names, inputs)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, inputs[0])],
    )
    return _finish(graph, None)


def _escaping_model(folder: Path, location: str = "../escape_weights.bin", name: str = "escape.onnx") -> Path:
    """escape/<name> whose initializer lives at ``location`` (by default ../escape_weights.bin,
    outside its folder)."""
    weights = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    (folder / "escape_weights.bin").write_bytes(weights.tobytes())
    tensor = numpy_helper.from_array(weights, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "w"], ["output"])],
        "rsdl_test_escape",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 2, 2])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    path = folder / "escape" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())  # onnx.save would try to resolve the external data
    return path


# -- TorchScript --------------------------------------------------------------------------------


def write_torchscript(trunk: list[Conv], heads: list[Head], spec: ModelSpec, path: Path) -> bool:
    """The same net as TorchScript, the spec as extra file; False when torch is not installed."""
    try:
        import torch
    except ImportError:
        return False

    def conv_module(conv: Conv) -> torch.nn.Conv2d:
        out, inp, kernel, _ = conv.weight.shape
        module = torch.nn.Conv2d(inp, out, kernel, padding=conv.padding)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(conv.weight))
            module.bias.copy_(torch.from_numpy(conv.bias))
        return module

    class Fcn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = torch.nn.ModuleList([conv_module(c) for c in trunk])
            self.heads = torch.nn.ModuleList([conv_module(h.conv) for h in heads])
            self.activations = [h.activation for h in heads]

        def forward(self, x: torch.Tensor):
            for conv in self.trunk:
                x = torch.relu(conv(x))
            outputs = []
            for conv, activation in zip(self.heads, self.activations):
                y = conv(x)
                if activation == "softmax":
                    y = torch.softmax(y, dim=1)
                elif activation == "sigmoid":
                    y = torch.sigmoid(y)
                outputs.append(y)
            return outputs[0] if len(outputs) == 1 else tuple(outputs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.10 deprecates TorchScript; it still works
        traced = torch.jit.trace(Fcn().eval(), torch.zeros(1, 3, TILE, TILE))
        torch.jit.save(
            traced, str(path), _extra_files={TORCHSCRIPT_SPEC_FILE: json.dumps(spec.to_metadata())}
        )
    return True


# -- pickles ----------------------------------------------------------------------------------


class _OpensMarker:
    """Unpickling this calls open(marker, "w"): proof that a loader unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_evil_torchscript(folder: Path) -> Path:
    """A zip with TorchScript's ``code/`` folder (so it is sniffed as TorchScript) and the marker
    pickle as its ``data.pkl``: loading it must not unpickle with Python's pickle."""
    payload = pickle.dumps({"state_dict": _OpensMarker(folder / EVIL_MARKER)}, protocol=2)
    path = folder / "evil_torchscript.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil_torchscript/data.pkl", payload)
        archive.writestr("evil_torchscript/code/__torch__.py", "def forward(self, x):\n  return x\n")
        archive.writestr("evil_torchscript/version", "3\n")
        archive.writestr(f"evil_torchscript/extra/{TORCHSCRIPT_SPEC_FILE}", json.dumps({"bands": [1, 2, 3]}))
    return path


def _fixed_size(model: onnx.ModelProto, height: int, width: int) -> onnx.ModelProto:
    """The model with its input and outputs fixed at ``height`` x ``width``."""
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = height, width
    onnx.checker.check_model(model)
    return model


def _downsampled(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model followed by a 2 x 2 average pool: its output is half the tile's size."""
    model.graph.node.append(
        helper.make_node("AveragePool", ["output"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2])
    )
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 3, "half_height", "half_width"])
    )
    onnx.checker.check_model(model)
    return model


def write_evil_pickles(folder: Path) -> tuple[Path, Path]:
    payload = pickle.dumps({"state_dict": _OpensMarker(folder / EVIL_MARKER)}, protocol=2)
    plain = folder / "evil.pth"
    plain.write_bytes(payload)
    zipped = folder / "evil_zip.pth"
    with zipfile.ZipFile(zipped, "w") as archive:  # torch.save's layout: <name>/data.pkl
        archive.writestr("evil_zip/data.pkl", payload)
        archive.writestr("evil_zip/version", "3\n")
    return plain, zipped


# -- all --------------------------------------------------------------------------------------


def write_test_models(folder: str | Path) -> dict[str, Path]:
    """Write every test model into ``folder`` (created); returns file name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    trunk = _trunk(rng)
    seg_head = Head(_conv(rng, 3, HIDDEN, 1, gain=2.0), "softmax")
    sigmoid_head = Head(_conv(rng, 1, HIDDEN, 1, gain=2.0), "sigmoid")
    regressor_head = Head(_conv(rng, 1, HIDDEN, 1, gain=8.0, bias=-1.0), "none")  # far outside 0..1

    models = {
        "fcn_seg.onnx": onnx_fcn(trunk, [seg_head], SEG_SPEC),
        "fcn_seg_batch2.onnx": onnx_fcn(trunk, [seg_head], SEG_SPEC, batch=2, size=TILE),
        "fcn_regressor.onnx": onnx_fcn(trunk, [regressor_head], REGRESSOR_SPEC),
        "fcn_two_heads.onnx": onnx_fcn(trunk, [seg_head, sigmoid_head], TWO_HEADS_SPEC),
        "fcn_no_metadata.onnx": onnx_fcn(trunk, [seg_head], None),
        "class_mismatch.onnx": onnx_fcn(
            trunk, [seg_head], ModelSpec(class_names={0: "background", 1: "building"}, bands=(1, 2, 3))
        ),
        "two_inputs.onnx": _identity_model([["batch", 3, 8, 8], ["batch", 3, 8, 8]]),
        "rank3_input.onnx": _identity_model([["batch", 8, 8]]),
        "classifier.onnx": onnx_classifier(CLASSIFIER_SPEC),
        "fcn_seg_64x48.onnx": _fixed_size(onnx_fcn(trunk, [seg_head], SEG_SPEC, size=64), 64, 48),
        "fcn_seg_33.onnx": onnx_fcn(
            trunk, [seg_head], ModelSpec(class_names=SEG_CLASSES, bands=(1, 2, 3)), size=33
        ),
        "fcn_seg_downsampled.onnx": _downsampled(onnx_fcn(trunk, [seg_head], SEG_SPEC)),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = out / name
        onnx.save(model, str(paths[name]))

    whole = paths["fcn_seg.onnx"].read_bytes()
    paths["truncated.onnx"] = out / "truncated.onnx"
    paths["truncated.onnx"].write_bytes(whole[: len(whole) // 2])
    paths["not_a_model.onnx"] = out / "not_a_model.onnx"
    paths["not_a_model.onnx"].write_text("This is a text file, not a model.\n")
    paths["evil.pth"], paths["evil_zip.pth"] = write_evil_pickles(out)
    paths["escape/escape.onnx"] = _escaping_model(out)
    paths["evil_torchscript.pt"] = write_evil_torchscript(out)
    outside = (out / "escape_weights.bin").resolve()
    paths["escape/absolute.onnx"] = _escaping_model(out, str(outside), "absolute.onnx")
    link = out / "escape" / "link_weights.bin"
    try:
        if not link.is_symlink():
            link.symlink_to(outside)
        paths["escape/symlink.onnx"] = _escaping_model(out, link.name, "symlink.onnx")
    except OSError:  # no symlinks here (some Windows setups): that model is left out
        pass

    for name, heads, spec in (
        ("fcn_seg.pt", [seg_head], SEG_SPEC),
        ("fcn_two_heads.pt", [seg_head, sigmoid_head], TWO_HEADS_SPEC),
    ):
        if write_torchscript(trunk, heads, spec, out / name):
            paths[name] = out / name
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("outdir", type=Path, help="folder to write the models into (created)")
    args = parser.parse_args()
    for name, path in sorted(write_test_models(args.outdir).items()):
        print(f"{name:24s} {path.stat().st_size:8d} bytes")


if __name__ == "__main__":
    main()
