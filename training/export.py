"""Export a trained net to ONNX or TorchScript with its spec inside, and prove the file right.

``python -m training export --checkpoint best.ckpt --output models/name.onnx [--dynamic]``
``python -m training export --from-onnx models/x/model.onnx --output models/x/model.onnx``

The exported file carries the whole spec (``ModelSpec.to_metadata``: classes, colours, bands,
normalisation, tile size, resolution, training metrics and data provenance): in ONNX
``metadata_props``, in TorchScript the extra file ``rsdl_spec.json``. The spec's ``training``
gains an ``export`` entry (format, opset, torch version, tolerance, dynamic size).

Verification, before the file gets its final name (it is written under a temporary name and
renamed only when every check passes, so a failed export leaves no file and an older file at
the path stays as it was):

1. ONNX only: ``onnx.checker.check_model(full_check=True)``, opset pinned (default 17).
2. The file is loaded by the plugin's own reader (``rsdl_qgis_plugin.inference.backends
   .load_model``, on the CPU) and the spec it reads must equal the spec exported, field by field.
3. Parity: the plugin backend's outputs against the torch net's (eval mode, float32) on seeded
   standard-normal inputs (what normalised pixels look like) of batch 1 and batch 3 at the
   sample size, and one more at twice the sample size when height and width are dynamic.
   **Tolerance: the largest absolute difference over every output element (logits) must be at
   most ``DEFAULT_TOLERANCE`` = 1e-4** (``--tolerance`` changes it). A U-Net with a ResNet-18
   encoder differs by about 3e-5 on the CPU.

Batch is always dynamic. Height and width are fixed at the spec's tile size by default: the
peer plugin Deepness's dock widget reads the tile size from the input shape and fails to load a
model whose height and width are dynamic ("Failed to load the model!"), and rsdl runs a fixed
model at its size. ``dynamic_size=True`` / ``--dynamic`` makes them dynamic (any tile size in
rsdl, Deepness headless only) for nets that run at twice the sample size in torch with image-shaped
outputs (fully convolutional segmentation and regression nets); classifiers, and nets that do not,
are refused. TorchScript files carry no input shape (rsdl's reader takes any size from them):
there ``dynamic_size`` decides the parity check at twice the size and what the spec records.

An existing rsdl ONNX file with a dynamic height and width is fixed without its checkpoint by
``--from-onnx`` (``training/onnx_fixed_size.py``): the input fixed at the spec's tile size, checked
as an export is, and its outputs compared with the dynamic file's.

Detectors and instance segmentors (torchvision R-CNNs, model_type Detector / InstanceSegmentor)
export in rsdl's detection layout (core/contract/detection_layouts.py, through
``training.nets.detection.RsdlLayout``): ``boxes`` [1, N, 4], ``scores`` [1, N], ``class_ids``
[1, N] and for instance models ``masks`` [1, N, H, W], N = the net's ``box_detections_per_img``.
The batch is fixed at 1 (rsdl runs fixed-batch models in chunks), height and width are fixed at
the tile size unless ``--dynamic`` (the nets never resize, so they run at any size: rsdl:detect can
then take other tiles, or a whole image in one pass). Before the file is written, besides
onnx.checker and the spec read back, ``ObjectDecoder.for_backend`` (rsdl:detect's reader) must
accept the layout, and parity is checked row by row on seeded inputs (noise with bright squares,
noise, and noise at twice the size when dynamic): **tolerances ``DETECTION_TOLERANCES``: boxes
1e-3 px, scores and mask probabilities 1e-4, class ids exact**; rows are matched by order, rows
whose scores tie within 1e-4 may swap. TorchScript export of detectors is refused.

The ONNX file is made by torch's TorchScript-based exporter (``dynamo=False``): the newer
exporter needs onnxscript, which this project does not install.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import TORCHSCRIPT_SPEC_FILE, ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.inference.backends import ModelBackend, load_model

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3)
PARITY_SEED = 0
INPUT_NAME = "input"
FORMATS = ("onnx", "torchscript", "both")


class ExportError(RsdlError):
    """An export that could not be made or did not pass its verification."""


@dataclass(frozen=True)
class ExportResult:
    """A verified export: where, the spec written into it, and how close it came to torch."""

    path: Path
    format: str
    spec: ModelSpec
    max_abs_diff: float
    tolerance: float
    dynamic_size: bool
    checked_shapes: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class _Plan:
    net: nn.Module  # a CPU copy in eval mode
    spec: ModelSpec  # as it will be written
    channels: int
    size: int
    dynamic_size: bool
    output_names: tuple[str, ...]

    def sample(self) -> torch.Tensor:
        return torch.zeros(1, self.channels, self.size, self.size)

    def parity_inputs(self) -> list[torch.Tensor]:
        return parity_inputs(self.channels, self.size, self.dynamic_size)


def parity_inputs(channels: int, size: int, dynamic_size: bool) -> list[torch.Tensor]:
    """Seeded standard-normal inputs (what normalised pixels look like): batch 1 and 3 at ``size``,
    and batch 1 at twice the size when height and width are dynamic."""
    generator = torch.Generator().manual_seed(PARITY_SEED)
    shapes = [(batch, channels, size, size) for batch in PARITY_BATCHES]
    if dynamic_size:
        shapes.append((1, channels, 2 * size, 2 * size))
    return [torch.randn(shape, generator=generator) for shape in shapes]


# -- planning ---------------------------------------------------------------------------------


def _outputs(result: Any) -> list[torch.Tensor]:
    """A net's result as a list of tensors (one per output head)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in result):
        return list(result)
    raise ExportError(
        f"The net returns {type(result).__name__}; export needs a tensor (or a tuple of tensors), "
        "e.g. logits [N, classes, H, W]."
    )


def _other_size_failure(net: nn.Module, channels: int, size: int) -> str | None:
    """Why the net cannot have a dynamic height and width: None when it runs on a tile of twice the
    size with image-shaped outputs (fully convolutional), else the reason."""
    try:
        with torch.no_grad():
            outputs = _outputs(net(torch.zeros(1, channels, 2 * size, 2 * size)))
    except Exception as error:  # any failure means: not size-agnostic
        return f"it fails on a {2 * size} x {2 * size} px tile ({type(error).__name__}: {error})"
    shapes = [list(output.shape) for output in outputs if output.ndim not in (3, 4)]
    if shapes:
        return f"its outputs {shapes} are not images [N, C, H, W] that follow the tile's size"
    return None


def _refuse_dynamic(spec: ModelSpec, net: nn.Module, channels: int, size: int) -> None:
    """Raise unless the net can be exported with a dynamic height and width."""
    if spec.model_type is ModelType.CLASSIFIER:
        reason = "a Classifier labels crops of the size it was trained at"
    else:
        reason = _other_size_failure(net, channels, size)
    if reason:
        raise ExportError(
            f"--dynamic (a dynamic height and width) needs a net that runs at other tile sizes, but "
            f"{reason}. Drop --dynamic (dynamic_size=False) to export it at a fixed {size} x {size} px."
        )


class _Probabilities(nn.Module):
    """Logits to probabilities in the exported graph: the plugin (like Deepness) reads a one-channel
    output as the class probability and several channels as per-class probabilities."""

    def __init__(self, net: nn.Module, activation: str) -> None:
        super().__init__()
        self.net = net
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=1)


def _json_clean(training: dict, key: str) -> dict:
    """``training`` as it will read back from JSON (tuples become lists), or a clear error."""
    try:
        return json.loads(json.dumps(training))
    except (TypeError, ValueError) as error:
        raise ExportError(
            f"The spec's '{key}' cannot be written as JSON: {error}. Keep metrics and provenance "
            "to numbers, strings, lists and dicts."
        ) from None


def _plan(
    net: nn.Module,
    spec: ModelSpec,
    sample_size: int | None,
    dynamic_size: bool,
    provenance: dict[str, Any],
) -> _Plan:
    if spec.bands is None:
        raise ExportError(
            "The spec lists no 'bands'; an exported model must say which raster bands it reads "
            "(TorchScript files do not declare their input channels). Set bands in the task's spec."
        )
    size = sample_size or spec.tile_size
    if not size or size < 1:
        raise ExportError("Give a sample (tile) size: the spec has no 'tile_size'.")
    channels = len(spec.bands)
    net = copy.deepcopy(net).cpu().float().eval()  # never move or retype the caller's net
    activation = spec.training.get("output_activation") if spec.training.get("output") == "logits" else None
    if activation in ("sigmoid", "softmax"):
        net = _Probabilities(net, activation).eval()  # exporters restore the wrapper's mode
    with torch.no_grad():
        names = _output_names(len(_outputs(net(torch.zeros(1, channels, size, size)))))
    if dynamic_size:
        _refuse_dynamic(spec, net, channels, size)
    if not dynamic_size and spec.tile_size not in (None, size):
        raise ExportError(
            f"The export has fixed {size} x {size} px inputs but the spec's tile_size is "
            f"{spec.tile_size}; export at the spec's tile size (drop the sample size) or change it."
        )
    export = {**provenance, "torch": torch.__version__, "dynamic_size": dynamic_size, "sample_size": size}
    training = {**_json_clean(spec.training, "training"), "export": export}
    if isinstance(net, _Probabilities):
        training["output"] = "probabilities"
    written = dataclasses.replace(spec, tile_size=spec.tile_size or size, training=training)
    return _Plan(net, written, channels, size, dynamic_size, names)


def _output_names(count: int) -> tuple[str, ...]:
    return tuple("output" if index == 0 else f"output{index + 1}" for index in range(count))


# -- verification -----------------------------------------------------------------------------


def _check_spec(read: ModelSpec, expected: ModelSpec, path: Path) -> None:
    differences = [
        f"{field.name}: wrote {getattr(expected, field.name)!r}, read {getattr(read, field.name)!r}"
        for field in dataclasses.fields(ModelSpec)
        if getattr(read, field.name) != getattr(expected, field.name)
    ]
    if differences:
        raise ExportError(
            f"The spec read back from '{path}' by the plugin differs from the spec exported:\n  "
            + "\n  ".join(differences)
        )


@dataclass(frozen=True)
class Comparison:
    """How a comparison's refusals name its two sides: the file written and what it must match."""

    written: str  # "exported model"
    reference: str  # "the torch net"
    measure: str  # what the difference is, in the message
    hint: str  # what a disagreement means


TORCH_PARITY = Comparison(
    "exported model",
    "the torch net",
    "max |exported - torch| over all logits",
    "The export is wrong (an op the exporter mishandles, or a net that behaves differently when "
    "traced); no file was written.",
)


def compare_outputs(
    expected: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    input_shape: Sequence[int],
    tolerance: float,
    comparison: Comparison = TORCH_PARITY,
) -> float:
    """The largest |got - expected| over every output element; raises ExportError above ``tolerance``
    (or on NaN) and when the outputs' number or shapes differ."""
    written, reference = comparison.written, comparison.reference
    if len(got) != len(expected):
        raise ExportError(f"The {written} has {len(got)} outputs, {reference} {len(expected)}.")
    worst = 0.0
    for head, (want, have) in enumerate(zip(expected, got)):
        if want.shape != have.shape:
            raise ExportError(
                f"Output {head + 1} of the {written} has shape {list(have.shape)} for input "
                f"{list(input_shape)}; {reference} gives {list(want.shape)}."
            )
        diff = float(np.max(np.abs(want - have))) if want.size else 0.0
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(
                f"The {written} disagrees with {reference} on input {list(input_shape)}: the largest "
                f"absolute difference of output {head + 1} is {diff:.3g}, above the stated tolerance "
                f"of {tolerance:g} ({comparison.measure}). {comparison.hint}"
            )
        worst = max(worst, diff)
    return worst


def _max_abs_diff(backend: ModelBackend, net: nn.Module, batch: torch.Tensor, tolerance: float) -> float:
    with torch.no_grad():
        expected = [t.float().numpy() for t in _outputs(net(batch))]
    return compare_outputs(expected, backend.run(batch.numpy()), batch.shape, tolerance)


def _verify(temp: Path, final: Path, plan: _Plan, tolerance: float) -> tuple[float, tuple]:
    """Load the temporary file with the plugin's reader; check its spec and its parity with torch."""
    try:
        backend = load_model(temp, device="cpu")
    except RsdlError as error:
        raise ExportError(f"The plugin cannot load the exported model '{final}': {error}") from None
    _check_spec(backend.spec, plan.spec, final)
    inputs = plan.parity_inputs()
    worst = max(_max_abs_diff(backend, plan.net, batch, tolerance) for batch in inputs)
    return worst, tuple(tuple(batch.shape) for batch in inputs)


# -- exports ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """torch deprecates the TorchScript exporter and tracer; tracer warnings stay visible."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _onnx_model(plan: _Plan, opset: int) -> Any:
    import onnx

    batch_axes = {name: {0: "batch"} for name in (INPUT_NAME, *plan.output_names)}
    if plan.dynamic_size:
        batch_axes[INPUT_NAME].update({2: "height", 3: "width"})
        with torch.no_grad():
            ranks = [output.ndim for output in _outputs(plan.net(plan.sample()))]
        for name, rank in zip(plan.output_names, ranks):
            # Own names: a valid-convolution net's outputs are smaller than its input.
            batch_axes[name].update({rank - 2: f"{name}_height", rank - 1: f"{name}_width"})
    buffer = io.BytesIO()
    try:
        with _quiet_deprecations():
            torch.onnx.export(
                plan.net,
                (plan.sample(),),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(plan.output_names),
                dynamic_axes=batch_axes,
                do_constant_folding=True,
            )
    except Exception as error:
        raise ExportError(f"torch could not export the net to ONNX (opset {opset}): {error}") from error
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, plan.spec.to_metadata())
    versions = {entry.domain: entry.version for entry in model.opset_import}
    if versions.get("", versions.get("ai.onnx")) != opset:
        raise ExportError(f"The ONNX file was written with opset {versions}, not the pinned {opset}.")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"onnx.checker rejects the exported model: {error}") from None
    return model


# -- detectors (rsdl layout) ----------------------------------------------------------------------

DETECTION_TYPES = (ModelType.DETECTOR, ModelType.INSTANCE_SEGMENTOR)
# Parity of an exported detector, per output: boxes in pixels, scores and mask probabilities.
DETECTION_TOLERANCES = {"boxes": 1e-3, "scores": 1e-4, "class_ids": 0.0, "masks": 1e-4}


def detection_inputs(channels: int, size: int, dynamic_size: bool) -> list[torch.Tensor]:
    """Seeded parity inputs: normalised noise with bright squares (something to detect), plain
    noise, and noise at twice the size when height and width are dynamic."""
    generator = torch.Generator().manual_seed(PARITY_SEED)
    squares = torch.randn(1, channels, size, size, generator=generator) * 0.3
    step = max(size // 4, 4)
    for index, corner in enumerate(range(step // 4, size - step, step)):
        side = max(step // 2 + 2 * index, 2)
        squares[:, :, corner : corner + side, corner : corner + side] += 2.0
    inputs = [squares, torch.randn(1, channels, size, size, generator=generator)]
    if dynamic_size:
        inputs.append(torch.randn(1, channels, 2 * size, 2 * size, generator=generator))
    return inputs


def _rows_match(want: dict[str, np.ndarray], have: dict[str, np.ndarray], row: int, other: int) -> bool:
    return all(
        np.max(np.abs(want[name][row] - have[name][other]), initial=0.0) <= DETECTION_TOLERANCES[name]
        for name in want
    )


def _detection_diff(backend: ModelBackend, net: nn.Module, batch: torch.Tensor, names: tuple) -> float:
    """Largest |exported - torch| of matched rows (see :func:`compare_detections`)."""
    with torch.no_grad():
        want = [t.float().numpy() for t in net(batch)]
    comparison = dataclasses.replace(TORCH_PARITY, written="exported detector")
    return compare_detections(want, backend.run(batch.numpy()), names, batch.shape, comparison)


def compare_detections(
    expected: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    names: Sequence[str],
    input_shape: Sequence[int],
    comparison: Comparison = TORCH_PARITY,
) -> float:
    """Largest |got - expected| of matched rows of one image's detections (batch 1, rsdl's layout:
    outputs in the order of ``names``); raises ExportError when a row has no partner within
    ``DETECTION_TOLERANCES``. Rows match by order; rows whose scores tie (within the score
    tolerance) may swap, as two sorts of equal scores may order them differently."""
    written, reference = comparison.written, comparison.reference
    want = dict(zip(names, (np.asarray(a, dtype=np.float32)[0] for a in expected)))
    have = dict(zip(names, (np.asarray(a, dtype=np.float32)[0] for a in got)))
    for name in names:
        if want[name].shape != have[name].shape:
            raise ExportError(
                f"The {written}'s '{name}' has shape {list(have[name].shape)} for input "
                f"{list(input_shape)}; {reference} gives {list(want[name].shape)}."
            )
    worst = 0.0
    for row in range(len(want["scores"])):
        ties = np.flatnonzero(np.abs(have["scores"] - want["scores"][row]) <= DETECTION_TOLERANCES["scores"])
        candidates = [row, *(t for t in ties if t != row)]
        partner = next((c for c in candidates if _rows_match(want, have, row, c)), None)
        if partner is None:
            differences = {
                name: float(np.max(np.abs(want[name][row] - have[name][row]), initial=0.0)) for name in names
            }
            raise ExportError(
                f"The {written} disagrees with {reference} on input {list(input_shape)}: row {row} "
                f"(score {want['scores'][row]:.4g} in {reference}) differs by {differences}, above the "
                f"stated tolerances {DETECTION_TOLERANCES}, and no tied row matches it. No file was written."
            )
        worst = max(
            worst, *(float(np.max(np.abs(want[n][row] - have[n][partner]), initial=0.0)) for n in names)
        )
    return worst


def _export_detector_onnx(
    net: nn.Module,
    spec: ModelSpec,
    path: Path,
    opset: int,
    sample_size: int | None,
    dynamic_size: bool,
) -> ExportResult:
    """A torchvision R-CNN in rsdl's detection layout (see :class:`training.nets.detection.RsdlLayout`):
    batch fixed at 1 (torchvision's detectors trace one image at a time; rsdl runs fixed-batch
    models in chunks), height and width fixed at the tile size unless ``dynamic_size``."""
    import onnx

    from rsdl_qgis_plugin.inference.detector import ObjectDecoder

    from .nets.detection import RsdlLayout

    if not hasattr(net, "roi_heads"):
        raise ExportError(
            f"A {spec.model_type.value} exports from a torchvision R-CNN (training/nets/detection.py); "
            f"got {type(net).__name__}."
        )
    if spec.bands is None:
        raise ExportError(
            "The spec lists no 'bands'; an exported model must say which raster bands it reads."
        )
    size = sample_size or spec.tile_size
    if not size or size < 1:
        raise ExportError("Give a sample (tile) size: the spec has no 'tile_size'.")
    if not dynamic_size and spec.tile_size not in (None, size):
        raise ExportError(
            f"The export has fixed {size} x {size} px inputs but the spec's tile_size is {spec.tile_size}."
        )
    wrapper = RsdlLayout(copy.deepcopy(net).cpu().float().eval()).eval()
    names = ("boxes", "scores", "class_ids", "masks") if wrapper.masks else ("boxes", "scores", "class_ids")
    channels = len(spec.bands)
    export = {
        "format": "onnx",
        "opset": opset,
        "tolerance": DETECTION_TOLERANCES,
        "torch": torch.__version__,
        "dynamic_size": dynamic_size,
        "sample_size": size,
        "batch": 1,
        "layout": "rsdl",
        "rows": wrapper.rows,
    }
    training = {**_json_clean(spec.training, "training"), "export": export}
    written = dataclasses.replace(spec, tile_size=spec.tile_size or size, training=training)
    axes: dict[str, dict[int, str]] = {}
    if dynamic_size:
        axes = {INPUT_NAME: {2: "height", 3: "width"}}
        if wrapper.masks:
            axes["masks"] = {2: "height", 3: "width"}
    buffer = io.BytesIO()
    try:
        with _quiet_deprecations(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # torchvision's own, expected
            torch.onnx.export(
                wrapper,
                (torch.zeros(1, channels, size, size),),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_axes=axes or None,
                do_constant_folding=True,
            )
    except Exception as error:
        raise ExportError(f"torch could not export the detector to ONNX (opset {opset}): {error}") from error
    model = onnx.load_from_string(buffer.getvalue())
    for output in model.graph.output:  # the rows are always N: say so (the tracer names them)
        dims = output.type.tensor_type.shape.dim
        dims[0].dim_value = 1
        dims[1].dim_value = wrapper.rows
    onnx.helper.set_model_props(model, written.to_metadata())
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"onnx.checker rejects the exported model: {error}") from None
    inputs = detection_inputs(channels, size, dynamic_size)
    with atomic_file(path, sidecars=()) as temp:
        temp.write_bytes(model.SerializeToString())
        try:
            backend = load_model(temp, device="cpu")
            ObjectDecoder.for_backend(backend)  # rsdl:detect's reader accepts the layout
        except RsdlError as error:
            raise ExportError(f"The plugin cannot load the exported detector '{path}': {error}") from None
        _check_spec(backend.spec, written, path)
        worst = max(_detection_diff(backend, wrapper, batch, names) for batch in inputs)
    return ExportResult(
        path,
        "onnx",
        written,
        worst,
        max(DETECTION_TOLERANCES.values()),
        dynamic_size,
        tuple(tuple(batch.shape) for batch in inputs),
    )


def export_onnx(
    net: nn.Module,
    spec: ModelSpec,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    sample_size: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    dynamic_size: bool = False,
) -> ExportResult:
    """Write ``net`` (normalised float32 NCHW -> logits) as ONNX with ``spec``, verified.

    ``sample_size`` is the tile side used to trace and check (default: ``spec.tile_size``).
    The input's height and width are fixed at it unless ``dynamic_size`` (refused for nets that do
    not run at other sizes); the batch is dynamic (detectors: 1).
    Raises ExportError, leaving no file, when ``onnx.checker``, the plugin's reader or the parity
    check (max |onnxruntime - torch| <= ``tolerance``, default 1e-4) fails.

    Detectors and instance segmentors (``spec.model_type``) export in rsdl's detection layout
    instead, checked against ``DETECTION_TOLERANCES`` (see the module docstring).
    """
    if spec.model_type in DETECTION_TYPES:
        return _export_detector_onnx(net, spec, Path(path), opset, sample_size, dynamic_size)
    plan = _plan(
        net, spec, sample_size, dynamic_size, {"format": "onnx", "opset": opset, "tolerance": tolerance}
    )
    model = _onnx_model(plan, opset)
    final = Path(path)
    with atomic_file(final, sidecars=()) as temp:
        temp.write_bytes(model.SerializeToString())
        worst, shapes = _verify(temp, final, plan, tolerance)
    return ExportResult(final, "onnx", plan.spec, worst, tolerance, plan.dynamic_size, shapes)


def export_torchscript(
    net: nn.Module,
    spec: ModelSpec,
    path: str | os.PathLike,
    sample_size: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    dynamic_size: bool = False,
) -> ExportResult:
    """Write ``net`` as a traced TorchScript file with ``spec`` as the extra file ``rsdl_spec.json``.

    Verified like :func:`export_onnx` (the plugin loads it; max |TorchScript - torch| <= ``tolerance``).
    Detectors are refused: export them to ONNX.
    """
    if spec.model_type in DETECTION_TYPES:
        raise ExportError(
            f"TorchScript export of a {spec.model_type.value} is not supported (torchvision's detectors "
            "trace to TorchScript only with fixed detections and the plugin probes TorchScript outputs "
            "as [B, C(, H, W)]); export it to ONNX (--format onnx)."
        )
    plan = _plan(net, spec, sample_size, dynamic_size, {"format": "torchscript", "tolerance": tolerance})
    try:
        with _quiet_deprecations():
            # check_trace re-runs the net; the parity check below covers that and more.
            traced = torch.jit.trace(plan.net, plan.sample(), check_trace=False)
    except Exception as error:
        raise ExportError(f"torch could not trace the net to TorchScript: {error}") from error
    extra = {TORCHSCRIPT_SPEC_FILE: json.dumps(plan.spec.to_metadata())}
    final = Path(path)
    with atomic_file(final, sidecars=()) as temp:
        with _quiet_deprecations():
            torch.jit.save(traced, str(temp), _extra_files=extra)
        worst, shapes = _verify(temp, final, plan, tolerance)
    return ExportResult(final, "torchscript", plan.spec, worst, tolerance, plan.dynamic_size, shapes)


# -- the command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training export",
        description="Export a checkpoint to ONNX and/or TorchScript with its spec, verified against "
        f"torch (max absolute difference of the logits <= --tolerance, default {DEFAULT_TOLERANCE:g}). "
        "Height and width are fixed at the tile size unless --dynamic; the batch is dynamic "
        "(detectors: 1). --from-onnx instead fixes the height and width of an rsdl ONNX file that "
        "has dynamic ones (no checkpoint needed).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="Lightning checkpoint (.ckpt) to export")
    source.add_argument(
        "--from-onnx",
        type=Path,
        metavar="ONNX",
        help="an rsdl ONNX file with a dynamic height and width: written to --output (which may be "
        "the same file) with the input fixed at its spec's tile size, the batch unchanged, and only "
        "if its outputs equal the source's; a file already fixed is left alone. Only --output applies",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="file to write; with --format both, the ONNX file, and the TorchScript file beside it "
        "with the suffix .pt. Its folder is created when missing.",
    )
    parser.add_argument("--format", choices=FORMATS, help="onnx (default), torchscript, or both")
    parser.add_argument("--opset", type=int, help=f"ONNX opset to pin (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="tile side in pixels written into the spec, the fixed input size (without --dynamic), and "
        "used to trace and check (default: the task's tile size)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="tile overlap in %% of the tile written into the spec (tiles_overlap), what rsdl:segment and "
        "rsdl:detect use by default (default: none written, the tools' 15); a detector wants tiles "
        "overlapping by its largest objects, so that each object is whole in some tile",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        help=f"largest allowed absolute difference between exported and torch logits "
        f"(default {DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="export a dynamic height and width (any tile size; Deepness then runs the model headless "
        "only, its dock widget cannot load it). Refused for nets that do not run at other sizes "
        "(classifiers); default: fixed at the tile size",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=None,
        help="detectors: the score rsdl:detect keeps by default, written into the spec as det_conf "
        "(default: the task's score_threshold); pick it from the precision-recall chart that "
        "'evaluate' writes for the validation split",
    )
    return parser


def with_confidence_threshold(spec: ModelSpec, threshold: float | None) -> ModelSpec:
    """``spec`` with ``det_conf`` = ``threshold`` (detectors only; None leaves it as trained)."""
    if threshold is None:
        return spec
    if spec.model_type not in DETECTION_TYPES:
        raise RsdlError(
            f"--confidence-threshold applies to detectors; this checkpoint is a {spec.model_type.value}."
        )
    if not 0.0 < threshold < 1.0:
        raise RsdlError(f"--confidence-threshold must lie between 0 and 1 (exclusive), got {threshold:g}.")
    return dataclasses.replace(spec, det_conf=threshold)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training export``: returns 0 when every requested file was written and verified
    (with --from-onnx: also when the file was already fixed, and nothing was written)."""
    args = _parser().parse_args(argv)
    if args.from_onnx is not None:
        return _main_from_onnx(args)
    from .checkpoints import load_checkpoint_net  # the task side of the package; imported on use

    export_format = args.format or "onnx"
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    try:
        net, spec = load_checkpoint_net(args.checkpoint)
        if args.tile_size:
            spec = dataclasses.replace(spec, tile_size=args.tile_size)
        if args.overlap is not None:
            if not 0.0 <= args.overlap < 100.0:
                raise RsdlError(
                    f"--overlap is a percentage of the tile from 0 to below 100, got {args.overlap:g}."
                )
            spec = dataclasses.replace(spec, tiles_overlap_percent=args.overlap)
        spec = with_confidence_threshold(spec, args.confidence_threshold)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        results = []
        if export_format in ("onnx", "both"):
            results.append(export_onnx(net, spec, args.output, opset, None, tolerance, args.dynamic))
        if export_format in ("torchscript", "both"):
            target = args.output.with_suffix(".pt") if export_format == "both" else args.output
            results.append(export_torchscript(net, spec, target, None, tolerance, args.dynamic))
    except RsdlError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    for result in results:
        tile = result.spec.tile_size
        size = "dynamic" if result.dynamic_size else f"fixed {tile} x {tile}"
        batch = "1" if result.spec.model_type in DETECTION_TYPES else "dynamic"  # rsdl's layout: one image
        print(
            f"{result.format}: {result.path} (batch {batch}, height/width {size}); plugin reads its "
            f"spec back unchanged; max |exported - torch| = {result.max_abs_diff:.2e} <= "
            f"{result.tolerance:g} on inputs {[list(s) for s in result.checked_shapes]}"
        )
    licence = write_weights_licence(results[0].spec, args.output.parent)
    if licence is not None:
        print(
            f"{licence}: the pretrained weights' licence and notices; redistribute it with the model "
            "(and say so in its model card)"
        )
    return 0


def write_weights_licence(spec: ModelSpec, folder: Path) -> Path | None:
    """``WEIGHTS_LICENSE.txt`` in ``folder`` when the model was fine-tuned from weights whose licence
    asks to travel with it (``training.pretrained`` of its spec); None when nothing is asked."""
    from .nets.pretrained import WEIGHTS_LICENCE_FILE, weights_licence_text

    text = weights_licence_text(spec.training.get("pretrained"))
    if text is None:
        return None
    path = folder / WEIGHTS_LICENCE_FILE
    with atomic_file(path, sidecars=()) as temp:
        temp.write_text(text, encoding="utf-8")
    return path


def _main_from_onnx(args: argparse.Namespace) -> int:
    """``--from-onnx``: fix the height and width of an existing rsdl ONNX file (onnx_fixed_size.py)."""
    from .onnx_fixed_size import fix_onnx_size  # it imports this module: imported on use

    given = {
        "--format": args.format,
        "--opset": args.opset,
        "--tile-size": args.tile_size,
        "--overlap": args.overlap,
        "--tolerance": args.tolerance,
        "--dynamic": args.dynamic or None,
        "--confidence-threshold": args.confidence_threshold,
    }
    extra = [name for name, value in given.items() if value is not None]
    try:
        if extra:
            raise RsdlError(
                f"--from-onnx takes only --output; {', '.join(extra)} apply to an export from a "
                "checkpoint (the fixed file keeps the source's spec, opset and tile size)."
            )
        result = fix_onnx_size(args.from_onnx, args.output)
    except RsdlError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
