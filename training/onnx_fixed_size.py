"""Fix the height and width of an rsdl ONNX file that has dynamic ones, without its checkpoint.

``python -m training export --from-onnx models/x/model.onnx --output models/x/model.onnx``

Why: the peer plugin Deepness's dock widget takes the tile size from the model's input shape
(``input_0_shape[-1]``) and cannot load a model whose width is a name such as 'width'. rsdl's
exports are fixed by default; files exported before with a dynamic size are fixed by this, with
no retraining.

What changes: the input's height and width become the spec's tile size (its batch stays as it
was); output dimensions that followed them (the exporter names them after the input's, or
``<output>_height`` / ``<output>_width``) become the sizes the source file gives at that tile; the
spec's ``training.export`` entry gets ``dynamic_size: false`` and ``fixed_from_dynamic`` (the
source's input shape, and how it was fixed), its other fields kept. The graph, its weights and
the other metadata stay the source's.

Checks, before the file gets its final name (written under a temporary name and renamed only
when every check passes; the output may be the source itself, which is read whole first):
``onnx.checker.check_model(full_check=True)``; the plugin's reader loads it, with the fixed input
size, and reads back the spec written, field by field; and its outputs equal the source's on the
export's seeded standard-normal inputs at the tile size (batch 1 and 3), within
``FIXED_SIZE_TOLERANCE`` over every output element; detectors on the export's detector inputs, row
by row within ``DETECTION_TOLERANCES``, and rsdl:detect's decoder accepts the file.

A file whose height and width are already fixed is left alone (nothing is written); a file that
is not an rsdl model (no ``rsdl_spec_version``) or whose spec has no tile size is refused.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.inference.backends import ModelBackend, ModelFormat, load_model, sniff_model_format

from .export import (
    DETECTION_TOLERANCES,
    DETECTION_TYPES,
    Comparison,
    ExportError,
    _check_spec,
    compare_detections,
    compare_outputs,
    detection_inputs,
    parity_inputs,
)

# The same graph on the same runtime: the fixed file must give the source's outputs. Not 0, so
# that an optimisation onnxruntime makes only for static shapes (a fused or reordered sum) passes.
FIXED_SIZE_TOLERANCE = 1e-6
FIXED_VS_DYNAMIC = Comparison(
    "fixed-size model",
    "the dynamic source file",
    "max |fixed - dynamic| over all output elements",
    "Fixing the size changed what the model computes; no file was written.",
)
HOW = "python -m training export --from-onnx"

Dims = tuple[int | str, ...]


@dataclass(frozen=True)
class FixedSizeResult:
    """A fixed file (or, ``written`` False, a source already fixed and left alone)."""

    source: Path
    path: Path
    spec: ModelSpec  # as written (the source's when nothing was written)
    written: bool
    source_input: Dims
    input: Dims
    max_abs_diff: float
    tolerance: float
    checked_shapes: tuple[tuple[int, ...], ...]

    def summary(self) -> str:
        """One line for the command line."""
        if not self.written:
            return (
                f"{self.source} already has a fixed input {_text(self.input)}; left alone, nothing written."
            )
        return (
            f"onnx: {self.path} (input {_text(self.input)}, was {_text(self.source_input)}); fixed from the "
            f"dynamic file {self.source}; plugin reads its spec back unchanged; max |fixed - dynamic| = "
            f"{self.max_abs_diff:.2e} <= {self.tolerance:g} on inputs "
            f"{[list(s) for s in self.checked_shapes]}"
        )


def _text(dims: Dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _dims(value: onnx.ValueInfoProto) -> Dims:
    """A tensor's dimensions: ints where fixed, else their names ('?' for an unnamed one)."""
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _read_source(source: Path) -> tuple[onnx.ModelProto, ModelBackend]:
    """The source parsed from its bytes (read whole, so the output may replace it) and loaded by the
    plugin's reader."""
    if not source.is_file():
        raise ExportError(f"--from-onnx: the file '{source}' does not exist (or is not a file).")
    if sniff_model_format(source) is not ModelFormat.ONNX:
        raise ExportError(
            f"--from-onnx: '{source}' is not an ONNX file; it fixes the .onnx files rsdl's export wrote."
        )
    data = source.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as error:  # protobuf's errors name no common class
        raise ExportError(f"--from-onnx: '{source}' is not a readable ONNX model: {error}") from None
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in model.graph.initializer):
        raise ExportError(
            f"--from-onnx: '{source}' keeps its weights in external data files; rsdl exports one "
            "self-contained file. Export it again from its checkpoint."
        )
    try:
        backend = load_model(source, device="cpu")
    except RsdlError as error:
        raise ExportError(f"--from-onnx: the plugin cannot load '{source}': {error}") from None
    return model, backend


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    weights = {tensor.name for tensor in model.graph.initializer}  # IR < 4 lists weights as inputs
    return next(value for value in model.graph.input if value.name not in weights)


def _fixed_spec(spec: ModelSpec, source_input: Dims) -> ModelSpec:
    training = copy.deepcopy(spec.training)
    export = dict(training.get("export") or {})
    export["dynamic_size"] = False
    export["fixed_from_dynamic"] = {"input": list(source_input), "by": HOW}
    training["export"] = export
    return dataclasses.replace(spec, training=training)


def _fixed_model(
    model: onnx.ModelProto, size: int, outputs: list[np.ndarray], spec: ModelSpec
) -> onnx.ModelProto:
    """A copy of ``model`` with the input's height and width at ``size``, the output dimensions that
    followed them at the sizes of ``outputs`` (the source's at that size) and ``spec``'s training."""
    fixed = copy.deepcopy(model)
    image = _image_input(fixed)
    dims = image.type.tensor_type.shape.dim
    followers = {d.dim_param for d in dims[2:] if d.dim_param}
    for dim in dims[2:]:
        dim.dim_value = size  # clears dim_param (a oneof)
    for value, array in zip(fixed.graph.output, outputs):
        names = followers | {f"{value.name}_height", f"{value.name}_width"}
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis and dim.dim_param in names:
                dim.dim_value = array.shape[axis]
    training = spec.to_metadata()["training"]
    entry = next((p for p in fixed.metadata_props if p.key == "training"), None)
    if entry is None:
        entry = fixed.metadata_props.add()
        entry.key = "training"
    entry.value = training
    try:
        onnx.checker.check_model(fixed, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"onnx.checker rejects the fixed-size model: {error}") from None
    return fixed


def _inputs(backend: ModelBackend, size: int, detector: bool) -> list[np.ndarray]:
    make = detection_inputs if detector else parity_inputs  # the export's own seeded inputs
    return [tensor.numpy() for tensor in make(backend.input_channels, size, False)]


def _compare(
    backend: ModelBackend, inputs: list[np.ndarray], expected: list[list[np.ndarray]], detector: bool
) -> float:
    worst = 0.0
    for batch, want in zip(inputs, expected):
        got = backend.run(batch)
        if detector:
            names = [output.name for output in backend.outputs]
            if not set(names) <= set(DETECTION_TOLERANCES):
                raise ExportError(
                    f"The detector's outputs {names} are not rsdl's detection layout "
                    f"({', '.join(DETECTION_TOLERANCES)}); --from-onnx compares only that layout."
                )
            diff = compare_detections(want, got, names, batch.shape, FIXED_VS_DYNAMIC)
        else:
            diff = compare_outputs(want, got, batch.shape, FIXED_SIZE_TOLERANCE, FIXED_VS_DYNAMIC)
        worst = max(worst, diff)
    return worst


def fix_onnx_size(source: str | os.PathLike, output: str | os.PathLike) -> FixedSizeResult:
    """Write ``source`` (an rsdl ONNX file with a dynamic height and width) to ``output`` with its
    input fixed at the spec's tile size, verified (see the module docstring). ``output`` may be
    ``source``. A source already fixed is left alone and nothing is written (``written`` False).
    Raises ExportError, leaving ``output`` as it was, when the source is refused or a check fails."""
    source, output = Path(source), Path(output)
    model, backend = _read_source(source)
    spec = backend.spec
    if not spec.spec_version:
        raise ExportError(
            f"--from-onnx: '{source}' is not an rsdl model (its metadata has no rsdl_spec_version); "
            "it fixes files that python -m training export wrote. Fix another model's input shape "
            "with its own tools."
        )
    source_input = _dims(_image_input(model))
    if len(source_input) != 4:
        raise ExportError(f"--from-onnx: '{source}' has the input {_text(source_input)}, not [N, C, H, W].")
    if all(isinstance(d, int) and d > 0 for d in source_input[2:]):
        return FixedSizeResult(source, source, spec, False, source_input, source_input, 0.0, 0.0, ())
    size = spec.tile_size
    if not size:
        raise ExportError(
            f"--from-onnx: the spec of '{source}' has no tile_size (nor tiles_size), so there is no size "
            "to fix its height and width at. Export it again from its checkpoint with --tile-size."
        )
    if any(isinstance(d, int) and d > 0 and d != size for d in source_input[2:]):
        raise ExportError(
            f"--from-onnx: '{source}' has the input {_text(source_input)}, which does not fit its spec's "
            f"tile_size {size}. Export it again from its checkpoint."
        )
    detector = spec.model_type in DETECTION_TYPES
    inputs = _inputs(backend, size, detector)
    expected = [backend.run(batch) for batch in inputs]  # before anything is written: output may be source
    written = _fixed_spec(spec, source_input)
    fixed = _fixed_model(model, size, expected[0], written)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(output, sidecars=()) as temp:
        temp.write_bytes(fixed.SerializeToString())
        try:
            reread = load_model(temp, device="cpu")
            if detector:
                from rsdl_qgis_plugin.inference.detector import ObjectDecoder

                ObjectDecoder.for_backend(reread)  # rsdl:detect's reader accepts the layout
        except RsdlError as error:
            raise ExportError(f"The plugin cannot load the fixed-size model '{output}': {error}") from None
        if reread.input_size != (size, size):
            raise ExportError(
                f"The plugin reads the fixed-size model's input size as {reread.input_size}, not "
                f"({size}, {size})."
            )
        _check_spec(reread.spec, written, output)
        worst = _compare(reread, inputs, expected, detector)
    tolerance = max(DETECTION_TOLERANCES.values()) if detector else FIXED_SIZE_TOLERANCE
    return FixedSizeResult(
        source,
        output,
        written,
        True,
        source_input,
        _dims(_image_input(fixed)),
        worst,
        tolerance,
        tuple(tuple(batch.shape) for batch in inputs),
    )
