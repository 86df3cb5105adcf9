"""Headless batch prediction: run a model over many rasters with the plugin's own tiled engines.

    python -m training predict --model m.onnx --output-dir out/ 'tiles/*.tif' \\
        [--workers 4 --devices cuda:0,cuda:1]

Segmentors and regressors: each raster goes through ``rsdl_qgis_plugin.inference.engine.TiledInference``
exactly as in QGIS's rsdl:segment (same backends, tile plan, blending, nodata handling and sinks);
only the input/output side differs: windows are read with rasterio (nodata from rasterio's masks)
and GeoTIFFs written with rasterio, strip by strip, under a temporary name renamed at the end
(complete or absent). For ``scene.tif`` it writes ``scene_classes.tif`` (uint8/uint16 with a
colour table; a regressor writes ``scene_values.tif``), optionally ``scene_confidence.tif``, and
``scene_classes_head2.tif``... for further output heads; all on the input's grid, CRS and transform.

Detectors and instance segmentors: each raster goes through
``rsdl_qgis_plugin.inference.tiled_detection.TiledDetection`` as in rsdl:detect (same decoder,
thresholds, seam merging and nodata rule: an object whose box centre is nodata is dropped), and
the objects stream into ``scene_objects.gpkg`` (layer ``objects``, the raster's CRS) through
``training/object_files.py``, complete or absent: one feature per object with class_id,
class_name, score, area (square map units) and, for oriented boxes, angle; boxes (oriented boxes
by their corners) as polygons, instance masks polygonized. ``--confidence`` and ``--blend`` do not
apply to them (a confidence raster asked for gets a warning).

Rasters are not resampled to the model's resolution (rsdl:segment can); a raster whose pixel
size differs from the model's by more than ``RESOLUTION_WARNING`` gets a warning.

Scaling out: ``--workers N`` runs N spawned processes that take rasters from a shared queue;
``--devices`` is given to the workers round-robin (worker k uses device k mod len(devices)). A
``cuda:K`` device is pinned with ``CUDA_VISIBLE_DEVICES=K`` in its worker, before any CUDA library
loads. On the CPU each worker gets ``cpu_count // workers`` threads unless ``--threads`` says.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import glob
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from rsdl_qgis_plugin.core.contract.model_check import check_raster_compatibility
from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.contract.model_types import refuse_unless_run_by
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.core.labels.label_rules import hex_to_rgb
from rsdl_qgis_plugin.core.raster.nodata import valid_pixels
from rsdl_qgis_plugin.core.tiling import policy
from rsdl_qgis_plugin.core.tiling.blending import BlendMode
from rsdl_qgis_plugin.inference.backends import ModelBackend, load_model
from rsdl_qgis_plugin.inference.detector import ObjectDecoder, detection_thresholds
from rsdl_qgis_plugin.inference.engine import HeadLayout, InferenceSettings, TiledInference
from rsdl_qgis_plugin.inference.sinks import (
    FLOAT_NODATA,
    SegmentationSink,
    ValueSink,
    class_nodata_value,
    head_classes,
)
from rsdl_qgis_plugin.inference.tiled_detection import DetectionSettings, TiledDetection, run_warnings
from training.object_files import ObjectFileWriter

PREDICT_TOOL = "python -m training predict"
OBJECT_MODEL_TYPES = (ModelType.DETECTOR, ModelType.INSTANCE_SEGMENTOR)  # objects, not maps
DEFAULT_BATCH_SIZE = policy.default_batch_size(ModelType.SEGMENTOR)
DEFAULT_TILE_SIZE = policy.default_tile_size(ModelType.SEGMENTOR)
DETECTOR_BATCH_SIZE = policy.default_batch_size(ModelType.DETECTOR)
DETECTOR_TILE_SIZE = policy.default_tile_size(ModelType.DETECTOR)
DEFAULT_OVERLAP = policy.DEFAULT_OVERLAP_PERCENT
ROWS_PER_STRIP = 32
RESOLUTION_WARNING = 0.05  # relative pixel-size difference that earns a warning


# -- reading and writing with rasterio ----------------------------------------------------------


class RasterioWindowReader:
    """The engine's WindowReader over an open rasterio dataset: (bands, h, w) float32 + valid mask.

    A pixel is valid when every band read is valid in rasterio's masks (nodata value, internal
    mask or alpha band) and finite: core/raster/nodata.py's rule, as in the plugin's readers.
    """

    def __init__(self, dataset: Any, bands: tuple[int, ...]) -> None:
        self.dataset = dataset
        self.bands = list(bands)

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        window = Window(col, row, cols, rows)
        data = self.dataset.read(self.bands, window=window, out_dtype="float32")
        masks = self.dataset.read_masks(self.bands, window=window)
        return data, valid_pixels(data, [None] * len(self.bands), list(masks))


class RasterioRowWriter:
    """Context manager writing a GeoTIFF on ``profile``'s grid as rows arrive, complete or absent.

    Rows are buffered into whole strips so each compressed strip is written exactly once.
    """

    def __init__(
        self,
        path: Path,
        profile: dict[str, Any],
        bands: int,
        dtype: str,
        nodata: float,
        colormap: dict[int, tuple[int, int, int, int]] | None = None,
        tags: dict[str, str] | None = None,
        descriptions: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.width, self.height = profile["width"], profile["height"]
        self.profile = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": bands,
            "dtype": dtype,
            "crs": profile.get("crs"),
            "transform": profile["transform"],
            "nodata": nodata,
            "compress": "deflate",
            "predictor": 3 if np.dtype(dtype).kind == "f" else 2,
            "tiled": False,
            "blockysize": ROWS_PER_STRIP,
            "BIGTIFF": "IF_SAFER",
        }
        self.colormap = colormap
        self.tags = tags or {}
        self.descriptions = descriptions
        self._stack = contextlib.ExitStack()
        self._buffer = np.zeros((bands, ROWS_PER_STRIP, self.width), dtype=dtype)
        self._first_row = 0
        self._rows = 0

    def __enter__(self) -> RasterioRowWriter:
        temp = self._stack.enter_context(atomic_file(self.path))
        self._dataset = self._stack.enter_context(rasterio.open(temp, "w", **self.profile))
        if self.colormap:
            self._dataset.write_colormap(1, self.colormap)
        self._dataset.update_tags(**self.tags)
        for band, text in enumerate(self.descriptions, start=1):
            self._dataset.set_band_description(band, text)
        return self

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        """Write (bands, rows, width) values at ``first_row``; rows must come in order, once."""
        if first_row != self._first_row + self._rows:
            raise ValueError(
                f"Rows must arrive in order: got {first_row}, expected {self._first_row + self._rows}."
            )
        offset = 0
        while offset < values.shape[1]:
            take = min(ROWS_PER_STRIP - self._rows, values.shape[1] - offset)
            self._buffer[:, self._rows : self._rows + take] = values[:, offset : offset + take]
            self._rows += take
            offset += take
            if self._rows == ROWS_PER_STRIP or self._first_row + self._rows == self.height:
                self._flush()

    def _flush(self) -> None:
        if self._rows:
            window = Window(0, self._first_row, self.width, self._rows)
            self._dataset.write(self._buffer[:, : self._rows], window=window)
        self._first_row += self._rows
        self._rows = 0

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> bool:
        # The dataset closes before atomic_file renames it (or removes it on an error).
        if exc_type is None and self._first_row + self._rows != self.height:
            error = RsdlError(f"Only {self._first_row} of {self.height} rows of '{self.path}' were written.")
            self._stack.__exit__(RsdlError, error, None)
            raise error
        return self._stack.__exit__(exc_type, exc, traceback)


# -- one raster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictOptions:
    """What rsdl:segment's and rsdl:detect's parameters say: tiles, blending, thresholds, outputs.
    None = the model's or the model type's default. ``blend_mode`` and ``confidence`` apply to
    segmentation and regression only; the thresholds and ``class_agnostic`` to detectors only."""

    tile_size: int | None = None
    overlap_percent: float | None = None
    batch_size: int | None = None
    blend_mode: BlendMode = BlendMode.PYRAMID
    confidence: bool = False
    bands: tuple[int, ...] | None = None
    skip_existing: bool = False
    confidence_threshold: float | None = None
    iou_threshold: float | None = None
    class_agnostic: bool = False


@dataclass(frozen=True)
class PredictionResult:
    raster: Path
    outputs: tuple[Path, ...]
    device: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    skipped: bool = False
    objects: dict[str, int] | None = None  # objects written per class name (detectors only)


def _tiling(backend: ModelBackend, options: PredictOptions) -> tuple[int, int, int]:
    """(tile size, overlap in pixels, batch size) by the one tiling policy the plugin's tools use."""
    spec = backend.spec
    name = Path(backend.path).name
    tile = policy.tile_size(
        spec, backend.input_size, options.tile_size, parameter="--tile-size", model_name=name
    )
    overlap = policy.overlap_pixels(spec, tile, options.overlap_percent)
    batch = options.batch_size
    if batch is None:
        batch = policy.default_batch_size(spec.model_type)
    return tile, overlap, batch


def inference_settings(backend: ModelBackend, options: PredictOptions) -> InferenceSettings:
    """Tile size, overlap and batch size chosen as rsdl:segment chooses them."""
    return InferenceSettings(*_tiling(backend, options), options.blend_mode)


def detection_settings(backend: ModelBackend, options: PredictOptions) -> DetectionSettings:
    """Tiles and thresholds chosen as rsdl:detect chooses them (thresholds: the options', else the
    model's det_conf / det_iou_thresh, else Ultralytics' defaults)."""
    confidence, iou = detection_thresholds(backend.spec, options.confidence_threshold, options.iou_threshold)
    return DetectionSettings(*_tiling(backend, options), confidence, iou, options.class_agnostic)


def output_paths(raster: Path, output_dir: Path, spec: ModelSpec, heads: int, confidence: bool) -> list[Path]:
    """Head 0, further heads, then the confidence raster (when asked)."""
    kind = "values" if spec.model_type is ModelType.REGRESSOR else "classes"
    paths = [
        output_dir / f"{raster.stem}_{kind}{'' if head == 0 else f'_head{head + 1}'}.tif"
        for head in range(heads)
    ]
    if confidence and spec.model_type is not ModelType.REGRESSOR:
        paths.append(output_dir / f"{raster.stem}_confidence.tif")
    return paths


def _class_writer(path: Path, profile: dict, spec: ModelSpec, layout: HeadLayout, head: int) -> tuple:
    classes = head_classes(spec, layout, head)
    dtype, nodata = class_nodata_value([c.value for c in classes])
    colormap = {c.value: (*hex_to_rgb(c.color), 255) for c in classes}
    tags = {f"class_{c.value}": c.name for c in classes}
    writer = RasterioRowWriter(path, profile, 1, dtype.name, nodata, colormap, tags, ["class"])
    return writer, dtype, nodata


def objects_path(raster: Path, output_dir: Path) -> Path:
    """The GeoPackage of a detector's objects for ``raster``."""
    return output_dir / f"{raster.stem}_objects.gpkg"


def predict_raster(
    backend: ModelBackend, raster: str | os.PathLike, output_dir: str | os.PathLike, options: PredictOptions
) -> PredictionResult:
    """Run ``backend`` over one raster and write its outputs into ``output_dir``: prediction
    GeoTIFFs for a segmentor or regressor, ``<stem>_objects.gpkg`` for a detector."""
    started = time.perf_counter()
    raster, output_dir = Path(raster), Path(output_dir)
    spec = backend.spec
    refuse_unless_run_by(spec, PREDICT_TOOL, Path(backend.path).name)
    predict = _predict_objects if spec.model_type in OBJECT_MODEL_TYPES else _predict_maps
    with rasterio.open(raster) as source:
        crs = source.crs
        compatibility = check_raster_compatibility(
            spec,
            backend.input_channels,
            source.count,
            source.dtypes[0],
            bool(crs and crs.is_geographic),
            options.bands,
        )
        warnings = (*compatibility.warnings, *_resolution_warning(spec, source))
        result = predict(backend, source, raster, output_dir, options, compatibility.bands)
    warnings = (*warnings, *result.warnings)
    seconds = 0.0 if result.skipped else time.perf_counter() - started
    return replace(result, seconds=seconds, warnings=warnings)


def _predict_maps(
    backend: ModelBackend,
    source: Any,
    raster: Path,
    output_dir: Path,
    options: PredictOptions,
    bands: tuple[int, ...],
) -> PredictionResult:
    """A segmentor's or regressor's GeoTIFFs for the open rasterio dataset ``source``."""
    spec = backend.spec
    engine = TiledInference(
        backend, spec, bands, inference_settings(backend, options), source.width, source.height
    )
    paths = output_paths(raster, output_dir, spec, len(engine.heads), options.confidence)
    if options.skip_existing and all(path.exists() for path in paths):
        return PredictionResult(raster, tuple(paths), backend.provider, 0.0, skipped=True)
    with contextlib.ExitStack() as stack:
        sinks = _open_sinks(stack, engine, spec, source.profile, paths, options.confidence)
        counts = engine.run(lambda: RasterioWindowReader(source, bands), sinks)
    return PredictionResult(raster, tuple(paths), backend.provider, 0.0, counts)


def _predict_objects(
    backend: ModelBackend,
    source: Any,
    raster: Path,
    output_dir: Path,
    options: PredictOptions,
    bands: tuple[int, ...],
) -> PredictionResult:
    """A detector's objects for the open rasterio dataset ``source``, written as they are final."""
    spec = backend.spec
    decoder = ObjectDecoder.for_backend(backend)
    settings = detection_settings(backend, options)
    detection = TiledDetection(backend, spec, decoder, settings, source.width, source.height)
    path = objects_path(raster, output_dir)
    if options.skip_existing and path.exists():
        return PredictionResult(raster, (path,), backend.provider, 0.0, skipped=True)
    crs_wkt = source.crs.to_wkt() if source.crs else None
    # Masks when the model outputs them (instance polygons), else the (oriented) boxes.
    with ObjectFileWriter(
        path, source.transform, crs_wkt, decoder.has_masks, decoder.oriented, spec.class_name
    ) as writer:
        counts = detection.run(lambda: RasterioWindowReader(source, bands), writer.write)
    return PredictionResult(
        raster,
        (path,),
        backend.provider,
        0.0,
        counts,
        _detection_warnings(counts, settings, options),
        objects=dict(sorted(writer.counts.items())),
    )


def _detection_warnings(
    counts: dict[str, int], settings: DetectionSettings, options: PredictOptions
) -> tuple[str, ...]:
    """What rsdl:detect warns of, with this command's option names."""
    warnings = []
    if options.confidence:
        warnings.append("--confidence (a confidence raster) applies to segmentation models; ignored.")
    warnings.extend(run_warnings(counts, settings.confidence, "--confidence-threshold"))
    if counts["run"] == 0:
        warnings.append(
            "Every tile is nodata: no object was looked for. Check the raster's nodata value and masks."
        )
    return tuple(warnings)


def _open_sinks(
    stack: contextlib.ExitStack,
    engine: TiledInference,
    spec: ModelSpec,
    profile: dict,
    paths: list[Path],
    confidence: bool,
) -> list:
    sinks = []
    for head, layout in enumerate(engine.heads):
        if spec.model_type is ModelType.REGRESSOR:
            writer = RasterioRowWriter(paths[head], profile, layout.channels, "float32", FLOAT_NODATA)
            sinks.append(ValueSink(stack.enter_context(writer)))
            continue
        writer, dtype, nodata = _class_writer(paths[head], profile, spec, layout, head)
        confidence_writer = None
        if head == 0 and confidence:
            confidence_writer = stack.enter_context(
                RasterioRowWriter(paths[-1], profile, 1, "float32", FLOAT_NODATA, descriptions=["confidence"])
            )
        sinks.append(
            SegmentationSink(stack.enter_context(writer), confidence_writer, spec.seg_thresh, dtype, nodata)
        )
    return sinks


def _resolution_warning(spec: ModelSpec, source: Any) -> tuple[str, ...]:
    if spec.resolution_cm is None or not source.crs or source.crs.is_geographic:
        return ()
    pixel_cm = abs(source.transform.a) * source.crs.linear_units_factor[1] * 100.0
    if abs(pixel_cm - spec.resolution_cm) <= RESOLUTION_WARNING * spec.resolution_cm:
        return ()
    return (
        f"The raster's pixels are {pixel_cm:g} cm but the model was trained at {spec.resolution_cm:g} cm; "
        "resample the raster (gdalwarp -tr) or use rsdl:segment, which resamples.",
    )


# -- many rasters, many processes ---------------------------------------------------------------


def expand_inputs(patterns: Sequence[str], list_file: str | os.PathLike | None = None) -> list[Path]:
    """Rasters named by glob patterns and/or a text file (one path or pattern per line, # comments)."""
    entries = list(patterns)
    if list_file is not None:
        base = Path(list_file).parent
        for line in Path(list_file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line if Path(line).is_absolute() else str(base / line))
    rasters: list[Path] = []
    for entry in entries:
        matches = sorted(glob.glob(entry, recursive=True)) if glob.has_magic(entry) else [entry]
        if not matches:
            raise RsdlError(f"No raster matches '{entry}'.")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise RsdlError(f"The raster '{path}' does not exist.")
            if path not in rasters:
                rasters.append(path)
    if not rasters:
        raise RsdlError("No input rasters: give paths, glob patterns or --input-list.")
    stems: dict[str, Path] = {}
    for path in rasters:
        if path.stem in stems:  # outputs are named after the stem
            raise RsdlError(
                f"'{stems[path.stem]}' and '{path}' share the name '{path.stem}', so their outputs "
                "would collide; predict them into different output folders."
            )
        stems[path.stem] = path
    return rasters


def _backend_device(device: str) -> str:
    """load_model's device for ours: ``cuda:K`` is ``cuda`` once CUDA_VISIBLE_DEVICES pins K."""
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        if not index.isdigit():
            raise RsdlError(f"Unknown device '{device}'; use cpu, auto, cuda or cuda:N.")
        return "cuda"
    if device not in ("cpu", "auto", "cuda"):
        raise RsdlError(f"Unknown device '{device}'; use cpu, auto, cuda or cuda:N.")
    return device


# Per-process state of a worker: its device and the loaded model.
_WORKER: dict[str, Any] = {}


def _worker_init(devices: Any, model: str, threads: int) -> None:
    device = devices.get()
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]  # before CUDA loads here
    _WORKER.update(device=device, model=model, threads=threads, backend=None)


def _predict_or_fail(
    backend: ModelBackend, raster: Path, output_dir: Path, options: PredictOptions
) -> PredictionResult:
    """predict_raster with any failure as an RsdlError: it ends this raster, not the batch, and
    pickles back from a worker whatever its origin (rasterio, onnxruntime...)."""
    try:
        return predict_raster(backend, raster, output_dir, options)
    except RsdlError:
        raise
    except Exception as error:
        raise RsdlError(f"{type(error).__name__}: {error}") from None


def _worker_predict(raster: Path, output_dir: Path, options: PredictOptions) -> PredictionResult:
    if _WORKER["backend"] is None:
        _WORKER["backend"] = load_model(
            _WORKER["model"], _WORKER["threads"], _backend_device(_WORKER["device"])
        )
    return _predict_or_fail(_WORKER["backend"], raster, output_dir, options)


def predict_rasters(
    model: str | os.PathLike,
    rasters: Sequence[Path],
    output_dir: str | os.PathLike,
    options: PredictOptions,
    workers: int = 1,
    devices: Sequence[str] = ("auto",),
    threads: int = 0,
) -> Iterator[tuple[Path, PredictionResult | RsdlError]]:
    """Predict every raster; yields (raster, result or the error that stopped it) as each finishes.

    One worker on a device without index runs in this process; otherwise ``workers`` spawned
    processes share the rasters, devices given to them round-robin.
    """
    if workers < 1:
        raise RsdlError(f"--workers must be at least 1, got {workers}.")
    for device in devices:
        _backend_device(device)
    output_dir = Path(output_dir)
    cpu_threads = threads or max(1, (os.cpu_count() or 1) // workers)
    if workers == 1 and ":" not in devices[0]:
        device = devices[0]
        backend = load_model(model, threads, device)
        for raster in rasters:
            try:
                yield raster, _predict_or_fail(backend, raster, output_dir, options)
            except RsdlError as error:
                yield raster, error
        return
    context = multiprocessing.get_context("spawn")  # fork would copy CUDA/threads state
    queue = context.Queue()
    for index in range(workers):
        queue.put(devices[index % len(devices)])
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(queue, str(model), cpu_threads)
    ) as pool:
        futures = {pool.submit(_worker_predict, raster, output_dir, options): raster for raster in rasters}
        for future in concurrent.futures.as_completed(futures):
            try:
                yield futures[future], future.result()
            except RsdlError as error:
                yield futures[future], error
            except concurrent.futures.process.BrokenProcessPool as error:
                yield futures[future], RsdlError(f"A worker process died: {error}")


# -- command line -------------------------------------------------------------------------------


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training predict",
        description="Run a model (ONNX or TorchScript) over many rasters with the plugin's tiled engines. "
        "Segmentation and regression models write GeoTIFFs on each raster's grid (<name>_classes.tif or "
        "<name>_values.tif); detectors and instance segmentation models write one GeoPackage per raster "
        "(<name>_objects.gpkg, layer 'objects', the raster's CRS): a feature per object with class_id, "
        "class_name, score, area (square map units) and, for oriented boxes, angle; boxes as polygons, "
        "instance masks as their outlines.",
    )
    parser.add_argument("rasters", nargs="*", help="raster paths or glob patterns (quote them; ** recurses)")
    parser.add_argument("--input-list", type=Path, help="text file of raster paths or patterns, one per line")
    parser.add_argument("--model", required=True, type=Path, help="model file (.onnx, or TorchScript .pt)")
    parser.add_argument("--output-dir", required=True, type=Path, help="folder for the outputs (created)")
    parser.add_argument(
        "--tile-size",
        type=int,
        help=f"tile side in pixels (default: the model's, else {DEFAULT_TILE_SIZE}; {DETECTOR_TILE_SIZE} "
        "for detectors)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        help=f"tile overlap in %% of the tile (default: the model's, else {DEFAULT_OVERLAP:g}); for "
        "detectors, objects longer than the overlap may come out in pieces at tile seams",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"tiles per model call (default: the model type's, {DEFAULT_BATCH_SIZE} for segmentors and "
        f"{DETECTOR_BATCH_SIZE} for detectors)",
    )
    parser.add_argument(
        "--blend",
        choices=[mode.value for mode in BlendMode],
        default=BlendMode.PYRAMID.value,
        help="blending of overlapping tiles (default pyramid; not used by detectors)",
    )
    parser.add_argument(
        "--bands", help="1-based raster bands to feed the model, comma-separated (default: the model's)"
    )
    parser.add_argument(
        "--confidence",
        action="store_true",
        help="also write <name>_confidence.tif (segmentation only; detectors ignore it with a warning)",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=_fraction,
        help="detectors: drop objects scoring below this (default: the model's det_conf, else 0.25)",
    )
    parser.add_argument(
        "--iou-threshold",
        type=_fraction,
        help="detectors: of two objects overlapping by more than this IoU, within a tile and across tiles, "
        "keep the higher-scoring (default: the model's det_iou_thresh, else 0.45)",
    )
    parser.add_argument(
        "--class-agnostic-nms",
        action="store_true",
        help="detectors: objects of different classes suppress each other too (one object, one class)",
    )
    parser.add_argument("--skip-existing", action="store_true", help="skip rasters whose outputs all exist")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes to spread the rasters over (default 1)"
    )
    parser.add_argument(
        "--devices",
        default="auto",
        help="comma-separated devices given to the workers round-robin: cpu, auto, cuda, cuda:0,cuda:1 ... "
        "(default auto: the GPU when the runtime has one)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads per worker (default: cores / workers)"
    )
    return parser


def _summary(outcome: PredictionResult) -> str:
    """One raster's line: tiles and time, and objects per class for a detector."""
    if outcome.skipped:
        return "skipped (outputs exist)"
    counts = outcome.counts
    tiles = (
        f"{counts['run']} tiles run, {counts['skipped_nodata']} nodata, "
        f"{outcome.seconds:.1f} s on {outcome.device}"
    )
    if outcome.objects is None:
        return tiles
    return f"{_per_class(outcome.objects)}; {tiles}"


def _per_class(objects: dict[str, int]) -> str:
    """E.g. ``5 objects (building 3, car 2)``."""
    per_class = ", ".join(f"{name} {count}" for name, count in sorted(objects.items())) or "none"
    return f"{sum(objects.values())} objects ({per_class})"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training predict``: 0 when every raster was predicted, 1 otherwise."""
    args = _parser().parse_args(argv)
    try:
        rasters = expand_inputs(args.rasters, args.input_list)
        bands = tuple(int(b) for b in args.bands.split(",")) if args.bands else None
        options = PredictOptions(
            tile_size=args.tile_size,
            overlap_percent=args.overlap,
            batch_size=args.batch_size,
            blend_mode=BlendMode(args.blend),
            confidence=args.confidence,
            bands=bands,
            skip_existing=args.skip_existing,
            confidence_threshold=args.confidence_threshold,
            iou_threshold=args.iou_threshold,
            class_agnostic=args.class_agnostic_nms,
        )
        args.output_dir.mkdir(parents=True, exist_ok=True)
        devices = [d.strip() for d in args.devices.split(",") if d.strip()] or ["auto"]
        failures = 0
        objects: Counter[str] | None = None  # over every raster predicted, for detectors
        for raster, outcome in predict_rasters(
            args.model, rasters, args.output_dir, options, args.workers, devices, args.threads
        ):
            if isinstance(outcome, RsdlError):
                failures += 1
                print(f"FAILED {raster}: {outcome}", file=sys.stderr)
                continue
            for warning in outcome.warnings:
                print(f"warning: {raster}: {warning}", file=sys.stderr)
            if outcome.objects is not None:
                objects = (objects or Counter()) + Counter(outcome.objects)
            print(f"{raster} -> {', '.join(str(p) for p in outcome.outputs)}: {_summary(outcome)}")
    except (RsdlError, ValueError) as error:
        print(f"predict failed: {error}", file=sys.stderr)
        return 1
    print(f"{len(rasters) - failures} of {len(rasters)} rasters predicted.")
    if objects is not None:
        print(f"In all: {_per_class(dict(objects))}.")
    return 1 if failures else 0
