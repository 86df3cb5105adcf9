"""Model backends: load an ONNX or TorchScript file and run float32 NCHW batches through it.

QGIS-free. onnxruntime and torch are imported only when a model of that kind is loaded, so the
plugin starts without them and says how to install what is missing.

The file's content decides the backend, never its extension:

* ONNX protobuf (starts with the ``ir_version`` field) -> ``OnnxBackend`` (onnxruntime);
* TorchScript zip (has a ``code/`` folder) -> ``TorchScriptBackend``; the spec is the extra
  file ``rsdl_spec.json``, and the spec must list ``bands`` (TorchScript files do not declare
  their input shape);
* a pickle, or a ``torch.save`` zip (``data.pkl`` without ``code/``) -> refused without being
  unpickled: unpickling runs arbitrary code.

``run`` accepts any batch size: a model with a fixed batch size gets the batch in chunks, the
last one padded with zeros, and the results are sliced back. Outputs are returned as the model
gives them (batch first), e.g. [B,C,H,W], [B,H,W], [B,C] or an output smaller than the input.
"""

from __future__ import annotations

import abc
import enum
import io
import json
import os
import pickletools
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.contract.model_spec import TORCHSCRIPT_SPEC_FILE, ModelSpec, ModelType
from ..core.contract.model_types import role_of
from ..core.errors import MissingDependencyError, ModelError, ModelSpecError

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "DEVICES",
    "ModelBackend",
    "ModelFormat",
    "OnnxBackend",
    "TensorInfo",
    "TorchScriptBackend",
    "batch_failure",
    "check_class_names",
    "is_out_of_memory",
    "load_model",
    "onnx_session_options",
    "out_of_memory_error",
    "output_channels",
    "sniff_model_format",
    "spec_input_channels",
]

DEVICES = ("auto", "cpu", "cuda")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
_SNIFF_BYTES = 64 * 1024
_PROBE_TILE = 64  # TorchScript probe tile side when the spec gives no tile size
_ORT_ERRORS_ONLY = 3  # onnxruntime log severity: keep QGIS's console free of its warnings


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, shape (None where dynamic) and numpy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


class ModelFormat(str, enum.Enum):
    """What a file holds, as far as its first bytes tell."""

    ONNX = "ONNX"
    TORCHSCRIPT = "TorchScript"
    PICKLE = "pickle"
    UNKNOWN = "unknown"


def sniff_model_format(path: Path) -> ModelFormat:
    """The kind of model file, from its first bytes (and zip listing); never unpickles."""
    with open(path, "rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    # ModelProto's first field is ir_version (field 1, varint): byte 0x08, then a small number.
    if len(head) >= 2 and head[0] == 0x08 and 1 <= head[1] <= 64:
        return ModelFormat.ONNX
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return ModelFormat.UNKNOWN
        if any("/code/" in f"/{name}" for name in names):
            return ModelFormat.TORCHSCRIPT
        if any(name.endswith(".pkl") for name in names):
            return ModelFormat.PICKLE  # torch.save's zip format: data.pkl holds the pickle
        return ModelFormat.UNKNOWN
    if _looks_like_pickle(head):
        return ModelFormat.PICKLE
    return ModelFormat.UNKNOWN


def _looks_like_pickle(head: bytes) -> bool:
    """A PROTO opcode (protocol 2+), or opcodes that parse up to STOP (protocols 0 and 1).

    ``pickletools.genops`` only decodes opcodes; it imports and calls nothing.
    """
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    try:
        return any(opcode.name == "STOP" for opcode, _arg, _pos in pickletools.genops(io.BytesIO(head)))
    except Exception:  # any decoding failure means "not a pickle"
        return False


class ModelBackend(abc.ABC):
    """A loaded model. Subclasses set the attributes and implement ``_forward``."""

    format: ModelFormat
    path: str
    spec: ModelSpec
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    provider: str
    fixed_batch: int | None
    input_channels: int
    input_size: tuple[int | None, int | None]

    def __init__(
        self, path: str, spec: ModelSpec, inputs: list[TensorInfo], outputs: list[TensorInfo], provider: str
    ) -> None:
        self.path = path
        self.spec = spec
        self.inputs = inputs
        self.outputs = outputs
        self.provider = provider
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                f"The model '{path}' has {len(inputs)} inputs ({names}); rsdl runs models with one "
                "image input [batch, channels, height, width]. Export the model with a single input."
            )
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ModelError(
                f"The model '{path}' takes input of shape {_shape_text(shape)}; rsdl needs an image "
                "input [batch, channels, height, width] (rank 4). Export the model with that input."
            )
        self.input_channels = shape[1] if shape[1] is not None else spec_input_channels(spec, path)
        self.input_size = (shape[2], shape[3])
        self.fixed_batch = _fixed_batch(shape[0], outputs)
        self._input_dtype = np.dtype(inputs[0].dtype)
        self._outputs_checked = False
        check_class_names(spec, [o.shape for o in outputs], path)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """One array per output head (batch first) for a (N, C, H, W) batch of normalised pixels."""
        batch = np.ascontiguousarray(batch, dtype=self._input_dtype)
        self._check_batch(batch)
        size = self.fixed_batch
        if size is None or len(batch) == size:
            outputs = self._forward_checked(batch)
        else:
            pieces = []
            for start in range(0, len(batch), size):
                chunk = batch[start : start + size]
                real = len(chunk)
                if real < size:
                    padding = np.zeros((size - real, *chunk.shape[1:]), dtype=chunk.dtype)
                    chunk = np.concatenate([chunk, padding])
                pieces.append([output[:real] for output in self._forward_checked(chunk)])
            outputs = [np.concatenate(head) for head in zip(*pieces)]
        if not self._outputs_checked:
            check_class_names(self.spec, [o.shape for o in outputs], self.path)
            self._outputs_checked = True
        return outputs

    def _forward_checked(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self._forward(batch)
        for index, output in enumerate(outputs):
            if output.ndim == 0 or output.shape[0] != len(batch):
                raise ModelError(
                    f"Output {index + 1} of the model '{self.path}' has shape {list(output.shape)} for "
                    f"a batch of {len(batch)}; outputs must have the batch as their first dimension."
                )
        return outputs

    def _check_batch(self, batch: np.ndarray) -> None:
        if batch.ndim != 4 or batch.shape[1] != self.input_channels or not len(batch):
            raise ModelError(
                f"The model takes batches of [N, {self.input_channels}, height, width]; got "
                f"{list(batch.shape)}."
            )
        if any(size is not None and size != got for size, got in zip(self.input_size, batch.shape[2:])):
            height, width = ("any" if size is None else size for size in self.input_size)
            raise ModelError(
                f"The model '{self.path}' takes tiles of {height} x {width} pixels; got "
                f"{batch.shape[2]} x {batch.shape[3]}. Use the model's tile size."
            )

    @abc.abstractmethod
    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on a batch the model accepts as it is."""


_OUT_OF_MEMORY_TEXTS = ("failed to allocate", "bad_alloc", "out of memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a runtime's error is an allocation failure (onnxruntime and torch raise their own
    types, with these words)."""
    return isinstance(error, MemoryError) or any(text in str(error).lower() for text in _OUT_OF_MEMORY_TEXTS)


def batch_failure(error: Exception, kind: str, path: str, batch: np.ndarray) -> Exception:
    """What a failed forward pass raises: ``MemoryError`` when the runtime ran out of memory (the
    caller knows the batch to lower), else a ``ModelError`` naming the model and the batch shape."""
    if is_out_of_memory(error):
        return MemoryError(str(error))
    return ModelError(f"The {kind} model '{path}' failed on a batch of {list(batch.shape)}: {error}")


def out_of_memory_error(
    backend: Any, count: int, unit: str, tile_size: int, error: BaseException
) -> ModelError:
    """The analyst's error for a batch that did not fit in memory: the model and the way out."""
    name = Path(getattr(backend, "path", "") or "model").name
    reason = str(error).strip() or type(error).__name__
    return ModelError(
        f"Out of memory while running the model '{name}' on a batch of {count} {unit} of "
        f"{tile_size} x {tile_size} pixels ({reason}). Lower BATCH_SIZE (or the tile size), or "
        "close other programs, and run again; no output was written."
    )


def spec_input_channels(spec: ModelSpec, path: str) -> int:
    """The input channel count when the model file does not fix it: the spec's ``bands``."""
    if spec.bands is None:
        raise ModelError(
            f"The model '{path}' does not declare how many input channels it takes, and its spec "
            "lists no 'bands'. Export it with a fixed channel dimension, or add 'bands' to its spec."
        )
    return len(spec.bands)


def _fixed_batch(input_batch: int | None, outputs: list[TensorInfo]) -> int | None:
    """The input's fixed batch size; else the one all outputs fix (Deepness models declare a
    dynamic input batch with outputs of batch 1, and fail on larger batches)."""
    if input_batch is not None:
        return input_batch
    output_batches = {o.shape[0] if o.shape else None for o in outputs}
    if len(output_batches) == 1 and None not in output_batches:
        return output_batches.pop()
    return None


def check_class_names(spec: ModelSpec, output_shapes: list[tuple], path: str) -> None:
    """Refuse class names that do not fit the outputs (shapes with None channels are skipped).

    A head of C > 1 channels needs C names; a one-channel (sigmoid) head may name just its
    class (Deepness) or background and class (rsdl). Only segmentors and classifiers are checked:
    Deepness regressors carry class names that do not describe their outputs.
    """
    heads = spec.head_class_names
    role = role_of(spec.model_type)
    if role is None or not role.class_scores or not heads:
        return
    if len(heads) > len(output_shapes):
        raise ModelError(
            f"The model's 'class_names' describe {len(heads)} outputs but the model '{path}' has "
            f"{len(output_shapes)}. Fix 'class_names' in the model's metadata."
        )
    for index, (names, shape) in enumerate(zip(heads, output_shapes)):
        channels = output_channels(spec.model_type, tuple(shape))
        if channels is None or not names:
            continue
        if len(names) == channels or (channels == 1 and len(names) == 2):
            continue
        raise ModelError(
            f"Output {index + 1} of the model '{path}' has {channels} channels but 'class_names' "
            f"names {len(names)} classes ({', '.join(names.values())}). Fix 'class_names' in the "
            "model's metadata: one name per output channel."
        )


def output_channels(model_type: ModelType, shape: tuple) -> int | None:
    """The channel (class) count of an output shape: [B,C] for per-crop types, [B,C,H,W] or [B,H,W]."""
    role = role_of(model_type)
    if role is not None and not role.per_pixel:
        return shape[1] if len(shape) == 2 else None
    if len(shape) == 3:  # [B, H, W]: one channel
        return 1
    return shape[1] if len(shape) == 4 else None


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _dimension(value: Any) -> int | None:
    """onnxruntime gives symbolic dimensions as strings or None; those are dynamic."""
    return value if isinstance(value, int) and value > 0 else None


_ORT_TYPES = {"float": "float32", "double": "float64"}


def _ort_dtype(ort_type: str) -> str:
    name = ort_type[len("tensor(") : -1] if ort_type.startswith("tensor(") else ort_type
    return _ORT_TYPES.get(name, name)


def _ort_tensor(node: Any) -> TensorInfo:
    return TensorInfo(node.name, tuple(_dimension(d) for d in node.shape), _ort_dtype(node.type))


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError.for_package("onnxruntime", "Running ONNX models") from error
    return onnxruntime


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError.for_package("torch", "Running TorchScript models") from error
    return torch


def onnx_session_options(threads: int = 0) -> Any:
    """The onnxruntime SessionOptions rsdl runs models with (threads 0: the runtime's default)."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    if threads > 0:
        options.intra_op_num_threads = threads
    # Idle pool threads sleep instead of spinning between runs: spinning takes the CPUs from
    # the tile reader and the blending, which run between (and beside) model batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend(ModelBackend):
    """An onnxruntime session: CUDA when available (unless device is "cpu"), else the CPU."""

    format = ModelFormat.ONNX

    def __init__(self, path: str, threads: int = 0, device: str = "auto") -> None:
        ort = _import_onnxruntime()
        options = onnx_session_options(threads)
        cuda = CUDA_PROVIDER in ort.get_available_providers()
        if device == "cuda" and not cuda:
            raise ModelError(
                "The GPU (CUDA) was requested, but this onnxruntime has no CUDA support. Install "
                "the 'onnxruntime-gpu' package, or run on the CPU (device 'auto' or 'cpu')."
            )
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if cuda and device != "cpu" else [CPU_PROVIDER]
        try:
            self._session = ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types; pass the reason on
            reason = str(error).strip()
            hint = (
                "External data files (weights saved beside the model) must lie in the model's "
                "folder or below it."
                if "external" in reason.lower()
                else "The file may be truncated or corrupt; copy or export it again."
            )
            raise ModelError(f"onnxruntime cannot load the ONNX model '{path}': {reason}\n{hint}") from None
        self._input_name = self._session.get_inputs()[0].name
        spec = ModelSpec.from_metadata(self._session.get_modelmeta().custom_metadata_map)
        super().__init__(
            path,
            spec,
            [_ort_tensor(i) for i in self._session.get_inputs()],
            [_ort_tensor(o) for o in self._session.get_outputs()],
            self._session.get_providers()[0],  # what onnxruntime actually uses after any fallback
        )

    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            return self._session.run(None, {self._input_name: batch})
        except Exception as error:
            raise batch_failure(error, "ONNX", self.path, batch) from None


class TorchScriptBackend(ModelBackend):
    """A TorchScript module on the CPU or CUDA; output shapes are learnt from one probe run."""

    format = ModelFormat.TORCHSCRIPT

    def __init__(self, path: str, threads: int = 0, device: str = "auto") -> None:
        torch = _import_torch()
        self._torch = torch
        self.path = path  # the probe run below reports errors with it
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise ModelError(
                "The GPU (CUDA) was requested, but this torch has no CUDA support or sees no GPU. "
                "Run on the CPU (device 'auto' or 'cpu')."
            )
        self._device = torch.device("cuda" if cuda and device != "cpu" else "cpu")
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide: torch has no per-module setting
        extra_files = {TORCHSCRIPT_SPEC_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.10 deprecates TorchScript
                self._module = torch.jit.load(path, map_location=self._device, _extra_files=extra_files)
        except Exception as error:
            raise ModelError(
                f"torch cannot load the TorchScript model '{path}': {error}. The file may be truncated "
                "or corrupt; export it again."
            ) from None
        self._module.eval()
        spec = ModelSpec.from_metadata(_spec_file_metadata(extra_files[TORCHSCRIPT_SPEC_FILE], path))
        channels = spec_input_channels(spec, path)
        probe_size = spec.tile_size or _PROBE_TILE
        probe = self._forward(np.zeros((1, channels, probe_size, probe_size), dtype=np.float32))
        outputs = [
            TensorInfo(f"output{i}", _probed_shape(output.shape), str(output.dtype))
            for i, output in enumerate(probe)
        ]
        inputs = [TensorInfo("input", (None, channels, None, None), "float32")]
        super().__init__(path, spec, inputs, outputs, f"torch:{self._device.type}")

    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        try:
            with torch.inference_mode():
                result = self._module(torch.from_numpy(batch).to(self._device))
        except Exception as error:
            raise batch_failure(error, "TorchScript", self.path, batch) from None
        if isinstance(result, dict):
            result = list(result.values())
        elif not isinstance(result, (list, tuple)):
            result = [result]
        return [tensor.detach().cpu().numpy() for tensor in result]


def _probed_shape(shape: tuple[int, ...]) -> tuple[int | None, ...]:
    """Keep only the channel count of [B,C] and [B,C,H,W]: one probe cannot tell what else is fixed."""
    if len(shape) in (2, 4):
        return (None, shape[1], *(None,) * (len(shape) - 2))
    return (None,) * len(shape)


def _spec_file_metadata(content: bytes | str, path: str) -> dict[str, Any]:
    if not content:
        return {}
    where = f"The spec file '{TORCHSCRIPT_SPEC_FILE}' in '{path}'"
    try:
        metadata = json.loads(content)
    except ValueError as error:
        raise ModelSpecError(f"{where} is not JSON: {error}. Export the model again.") from None
    if not isinstance(metadata, dict):
        raise ModelSpecError(f"{where} must hold a JSON object of spec keys. Export the model again.")
    return metadata


def load_model(path: str | os.PathLike, threads: int = 0, device: str = "auto") -> ModelBackend:
    """Load a model file, choosing the backend from its content.

    ``threads`` > 0 limits the CPU threads the model uses; ``device`` is "auto" (GPU when
    available), "cpu" or "cuda".
    """
    if device not in DEVICES:
        raise ModelError(f"Unknown device '{device}'; use one of {', '.join(DEVICES)}.")
    file = Path(path)
    if not file.exists():
        raise ModelError(f"The model file '{file}' does not exist. Check the path.")
    if not file.is_file():
        raise ModelError(f"'{file}' is a folder, not a model file. Choose the .onnx file inside it.")
    kind = sniff_model_format(file)
    if kind == ModelFormat.ONNX:
        return OnnxBackend(str(file), threads, device)
    if kind == ModelFormat.TORCHSCRIPT:
        return TorchScriptBackend(str(file), threads, device)
    if kind == ModelFormat.PICKLE:
        raise ModelError(
            f"'{file}' is a Python pickle (e.g. a PyTorch checkpoint written by torch.save). rsdl "
            "never unpickles model files, because unpickling can run any code. Export the model to "
            "ONNX (torch.onnx.export) or TorchScript (torch.jit.trace(...).save(...)) and load that."
        )
    raise ModelError(
        f"'{file}' is not a model file rsdl can read: it is neither ONNX nor TorchScript. Choose an "
        ".onnx model (or a TorchScript .pt) exported for rsdl or Deepness."
    )
