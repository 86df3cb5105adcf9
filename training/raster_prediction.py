"""One raster through a model without QGIS, with the plugin's own tiled engines: what each task
of ``python -m training predict`` runs (``batch_runner.py`` spreads the tasks, ``predict.py`` is
the command).

Segmentors and regressors: each raster goes through ``rsdl_qgis_plugin.inference.engine.TiledInference``
exactly as in QGIS's rsdl:segment (same backends, tile plan, blending, nodata handling and sinks);
only the input/output side differs: windows are read with rasterio (nodata from rasterio's masks)
and GeoTIFFs written with rasterio, strip by strip, under a temporary name renamed at the end
(complete or absent). For ``scene.tif`` it writes ``scene_classes.tif`` (uint8/uint16 with a
colour table; a regressor writes ``scene_values.tif``), optionally ``scene_confidence.tif``, and
``scene_classes_head2.tif``... for further output heads; all on the input's grid, CRS and transform.
A row block (``rows``) writes the same files for its rows only; ``stitch_blocks`` joins blocks
into files equal to the whole run's.

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
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
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
from rsdl_qgis_plugin.inference.backends import ModelBackend
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
ROW_BLOCKS_FOR_MAPS_ONLY = (
    "--split-rows applies to segmentation and regression models: a detector's objects are merged "
    "across the tiles of the whole raster, so it runs each raster as one task."
)


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

    Rows are buffered into whole strips so each compressed strip is written exactly once. With
    ``row_offset`` the file holds a block of a larger raster: rows arrive numbered in the larger
    raster and land ``row_offset`` rows higher.
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
        row_offset: int = 0,
    ) -> None:
        self.path = path
        self.row_offset = row_offset
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
        first_row -= self.row_offset
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
    objects: dict[str, int] | None = None  # objects written per class name (detectors only)
    geotiffs: tuple[GeoTiffOutput, ...] = ()  # how the GeoTIFFs were written (segmentors, regressors)
    worker: str = ""
    model_loads: int = 0  # models the worker process had loaded by then (1: loaded once, kept)


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


@dataclass(frozen=True)
class GeoTiffOutput:
    """One GeoTIFF a segmentor or regressor writes per raster: its path and what its writer needs.
    A row block writes the same file into a part folder; the stitch writes the final one."""

    path: Path
    bands: int
    dtype: str
    nodata: float
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    tags: dict[str, str] | None = None
    descriptions: tuple[str, ...] = ()

    def writer(
        self, profile: dict[str, Any], path: Path | None = None, row_offset: int = 0
    ) -> RasterioRowWriter:
        return RasterioRowWriter(
            path or self.path,
            profile,
            self.bands,
            self.dtype,
            self.nodata,
            self.colormap,
            self.tags,
            self.descriptions,
            row_offset,
        )


def map_outputs(
    raster: Path, output_dir: Path, spec: ModelSpec, heads: Sequence[HeadLayout], confidence: bool
) -> list[GeoTiffOutput]:
    """Head 0, further heads, then the confidence raster (when asked)."""
    regressor = spec.model_type is ModelType.REGRESSOR
    outputs = []
    for head, layout in enumerate(heads):
        path = output_dir / f"{raster.stem}_{'values' if regressor else 'classes'}{_head_suffix(head)}.tif"
        if regressor:
            outputs.append(GeoTiffOutput(path, layout.channels, "float32", FLOAT_NODATA))
            continue
        classes = head_classes(spec, layout, head)
        dtype, nodata = class_nodata_value([c.value for c in classes])
        colormap = {c.value: (*hex_to_rgb(c.color), 255) for c in classes}
        tags = {f"class_{c.value}": c.name for c in classes}
        outputs.append(GeoTiffOutput(path, 1, dtype.name, nodata, colormap, tags, ("class",)))
    if confidence and not regressor:
        path = output_dir / f"{raster.stem}_confidence.tif"
        outputs.append(GeoTiffOutput(path, 1, "float32", FLOAT_NODATA, descriptions=("confidence",)))
    return outputs


def _head_suffix(head: int) -> str:
    return "" if head == 0 else f"_head{head + 1}"


def objects_path(raster: Path, output_dir: Path) -> Path:
    """The GeoPackage of a detector's objects for ``raster``."""
    return output_dir / f"{raster.stem}_objects.gpkg"


def predict_raster(
    backend: ModelBackend,
    raster: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: PredictOptions,
    rows: tuple[int, int] | None = None,
) -> PredictionResult:
    """Run ``backend`` over one raster and write its outputs into ``output_dir``: prediction
    GeoTIFFs for a segmentor or regressor, ``<stem>_objects.gpkg`` for a detector. With ``rows``
    (first, stop) a segmentor or regressor writes that block of rows only, as the whole run
    would give them (``stitch_blocks`` joins the blocks)."""
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
        result = predict(backend, source, raster, output_dir, options, compatibility.bands, rows)
    warnings = (*warnings, *result.warnings)
    return replace(result, seconds=time.perf_counter() - started, warnings=warnings)


def _predict_maps(
    backend: ModelBackend,
    source: Any,
    raster: Path,
    output_dir: Path,
    options: PredictOptions,
    bands: tuple[int, ...],
    rows: tuple[int, int] | None,
) -> PredictionResult:
    """A segmentor's or regressor's GeoTIFFs for the open rasterio dataset ``source``; with
    ``rows``, the GeoTIFFs of that block of rows only (on the block's grid)."""
    spec = backend.spec
    engine = TiledInference(
        backend, spec, bands, inference_settings(backend, options), source.width, source.height
    )
    outputs = map_outputs(raster, output_dir, spec, engine.heads, options.confidence)
    profile, row_offset = dict(source.profile), 0
    if rows is not None:
        row_offset = rows[0]
        profile.update(height=rows[1] - rows[0], transform=source.transform * Affine.translation(0, rows[0]))
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(output.writer(profile, row_offset=row_offset)) for output in outputs]
        sinks = _sinks(engine, spec, writers, options.confidence)
        counts = engine.run(lambda: RasterioWindowReader(source, bands), sinks, rows=rows)
    return PredictionResult(
        raster,
        tuple(output.path for output in outputs),
        backend.provider,
        0.0,
        counts,
        geotiffs=tuple(outputs),
    )


def stitch_blocks(raster: Path, outputs: Sequence[GeoTiffOutput], blocks: Sequence[Path]) -> None:
    """Join row blocks into each output, strip by strip: ``blocks`` are the blocks' folders in row
    order, each holding the block's GeoTIFFs under the outputs' names. Since every block holds
    exactly the rows the whole run gives, the files equal the whole run's."""
    with rasterio.open(raster) as source:
        profile = dict(source.profile)
    for output in outputs:
        with output.writer(profile) as writer:
            first_row = 0
            for folder in blocks:
                with rasterio.open(folder / output.path.name) as block:
                    for top in range(0, block.height, ROWS_PER_STRIP):
                        window = Window(0, top, block.width, min(ROWS_PER_STRIP, block.height - top))
                        writer.write_rows(first_row + top, block.read(window=window))
                    first_row += block.height


def _predict_objects(
    backend: ModelBackend,
    source: Any,
    raster: Path,
    output_dir: Path,
    options: PredictOptions,
    bands: tuple[int, ...],
    rows: tuple[int, int] | None,
) -> PredictionResult:
    """A detector's objects for the open rasterio dataset ``source``, written as they are final."""
    if rows is not None:
        raise RsdlError(ROW_BLOCKS_FOR_MAPS_ONLY)
    spec = backend.spec
    decoder = ObjectDecoder.for_backend(backend)
    settings = detection_settings(backend, options)
    detection = TiledDetection(backend, spec, decoder, settings, source.width, source.height)
    path = objects_path(raster, output_dir)
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


def _sinks(
    engine: TiledInference, spec: ModelSpec, writers: list[RasterioRowWriter], confidence: bool
) -> list:
    """One sink per head over the open writers (map_outputs' order: heads, then confidence)."""
    if spec.model_type is ModelType.REGRESSOR:
        return [ValueSink(writer) for writer in writers[: len(engine.heads)]]
    confidence_writer = writers[-1] if confidence else None
    return [
        SegmentationSink(
            writers[head],
            confidence_writer if head == 0 else None,
            spec.seg_thresh,
            np.dtype(writers[head].profile["dtype"]),
            writers[head].profile["nodata"],
        )
        for head in range(len(engine.heads))
    ]


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
