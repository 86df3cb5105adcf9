"""``python -m training predict``: a model over many rasters, in this process or on a Dask cluster.

    python -m training predict --model m.onnx --output-dir out/ 'tiles/**/*.tif' \\
        [--workers 4 --devices cuda:0,cuda:1 | --scheduler tcp://host:8786] [--split-rows 8192] \\
        [--merge-vrt out/all.vrt | --merge-objects out/all.gpkg]

Each raster is predicted by ``raster_prediction.py`` (the plugin's tiled engines), as one task of
``batch_runner.py``: here, on a local Dask cluster (``--workers``) or on an existing one
(``--scheduler``). Outputs mirror the inputs' folders (``batch_inputs.py``) and stay complete or
absent; ``rsdl_manifest.json`` (``manifest.py``) records what is done, so the same command run
again predicts only what is missing. Whole-area results (``mosaic.py``) are built at the end from
every complete raster. Progress goes to stderr as a bar on a terminal; each raster's line goes to
stdout, and a summary table ends the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import rasterio

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.tiling.blending import BlendMode
from rsdl_qgis_plugin.core.tiling.row_blocks import row_blocks
from rsdl_qgis_plugin.inference.backends import load_model
from training.batch_inputs import DEFAULT_INDEX_FIELD, expand_inputs, output_folders
from training.batch_runner import (
    DEFAULT_GDAL_CACHE_MB,
    DEFAULT_RETRIES,
    ModelRef,
    RasterTask,
    TaskFailure,
    backend_device,
    blocks_root,
    dask_client,
    run_in_process,
    run_on_dask,
)
from training.manifest import Fingerprint, Manifest, file_sha256
from training.mosaic import merge_objects, merge_vrt
from training.raster_prediction import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    DETECTOR_BATCH_SIZE,
    DETECTOR_TILE_SIZE,
    OBJECT_MODEL_TYPES,
    ROW_BLOCKS_FOR_MAPS_ONLY,
    PredictionResult,
    PredictOptions,
)

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
    parser.add_argument(
        "--index",
        type=Path,
        help="an index of rasters: a vector file of footprints with a path field (gdaltindex's output, a "
        "STAC catalogue saved as GeoPackage) or a GDAL VRT (its sources); relative paths are relative to it",
    )
    parser.add_argument(
        "--index-field",
        default=DEFAULT_INDEX_FIELD,
        help=f"the index's field holding the raster paths (default '{DEFAULT_INDEX_FIELD}', as gdaltindex)",
    )
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
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="predict every raster again, even those the output folder's manifest (rsdl_manifest.json) "
        "records as complete with this model and these settings (by default they are skipped)",
    )
    scale = parser.add_argument_group("scaling out")
    scale.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of a local Dask cluster (default 1: everything runs in this process)",
    )
    scale.add_argument(
        "--scheduler",
        help="address of a running Dask scheduler (tcp://host:8786) whose workers take the rasters; "
        "start workers with 'dask worker ADDRESS --nthreads 1' (GPU workers: --resources GPU=1), with "
        "this package importable and the rasters, model and output folder at the same paths",
    )
    scale.add_argument(
        "--devices",
        default="auto",
        help="comma-separated devices given to the local workers round-robin: cpu, auto, cuda, "
        "cuda:0,cuda:1 ... (default auto: the GPU when the runtime has one); with --scheduler one device, "
        "cpu or cuda (each GPU worker uses its own GPU)",
    )
    scale.add_argument(
        "--threads", type=int, default=0, help="CPU threads per worker (default: cores / local workers)"
    )
    scale.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help=f"times a raster whose task fails unexpectedly is tried again (default {DEFAULT_RETRIES}); "
        "a worker that dies loses nothing (its task runs elsewhere), and a refused raster is not retried",
    )
    scale.add_argument(
        "--split-rows",
        type=int,
        default=0,
        help="split rasters taller than this many rows into blocks of this many rows that run as "
        "separate tasks and are stitched into one file equal to the unsplit run (segmentation and "
        "regression; default 0: never split)",
    )
    scale.add_argument(
        "--gdal-cache",
        type=int,
        default=DEFAULT_GDAL_CACHE_MB,
        help=f"GDAL block cache per worker process, MB (default {DEFAULT_GDAL_CACHE_MB}; GDAL's own "
        "default is 5%% of the RAM for each process, which adds up over the workers of a node)",
    )
    merge = parser.add_argument_group("whole-area results")
    merge.add_argument(
        "--merge-vrt",
        type=Path,
        help="also write one VRT mosaic of every raster's class (or value) output, e.g. out/all.vrt "
        "(gdalbuildvrt; the rasters must share a CRS)",
    )
    merge.add_argument(
        "--merge-objects",
        type=Path,
        help="detectors: also write every raster's objects into one GeoPackage, e.g. out/all.gpkg, with "
        "the source raster; pieces of one object cut by the edge between two rasters are dissolved "
        "into one (field 'pieces'), and objects at the outer edge of the rasters are flagged "
        "(field 'at_raster_edge')",
    )
    return parser


def _line(outcome: PredictionResult) -> str:
    """One raster's line: tiles and time, and objects per class for a detector."""
    counts = outcome.counts
    tiles = (
        f"{counts['run']} tiles run, {counts['skipped_nodata']} nodata, "
        f"{outcome.seconds:.1f} s on {outcome.device} ({outcome.worker})"
    )
    if outcome.objects is None:
        return tiles
    return f"{_per_class(outcome.objects)}; {tiles}"


def _per_class(objects: dict[str, int]) -> str:
    """E.g. ``5 objects (building 3, car 2)``."""
    per_class = ", ".join(f"{name} {count}" for name, count in sorted(objects.items())) or "none"
    return f"{sum(objects.values())} objects ({per_class})"


def _options(args: argparse.Namespace) -> PredictOptions:
    return PredictOptions(
        tile_size=args.tile_size,
        overlap_percent=args.overlap,
        batch_size=args.batch_size,
        blend_mode=BlendMode(args.blend),
        confidence=args.confidence,
        bands=tuple(int(b) for b in args.bands.split(",")) if args.bands else None,
        confidence_threshold=args.confidence_threshold,
        iou_threshold=args.iou_threshold,
        class_agnostic=args.class_agnostic_nms,
    )


def _settings(options: PredictOptions) -> dict:
    """The options as the manifest records them (JSON values)."""
    settings = asdict(options)
    settings["blend_mode"] = options.blend_mode.value
    settings["bands"] = list(options.bands) if options.bands else None
    return settings


def _check_scaling(args: argparse.Namespace, devices: list[str], detector: bool) -> None:
    for number, name, least in (
        (args.workers, "--workers", 1),
        (args.retries, "--retries", 0),
        (args.gdal_cache, "--gdal-cache", 1),
    ):
        if number < least:
            raise RsdlError(f"{name} must be at least {least}, got {number}.")
    if args.split_rows < 0:
        raise RsdlError(f"--split-rows must be 0 (never split) or a number of rows, got {args.split_rows}.")
    if args.split_rows and detector:
        raise RsdlError(ROW_BLOCKS_FOR_MAPS_ONLY)
    if args.scheduler and (len(devices) > 1 or ":" in devices[0]):
        raise RsdlError(
            "With --scheduler give one device (cpu, auto or cuda): each worker uses its own GPU. Pin GPUs "
            "when starting the workers (CUDA_VISIBLE_DEVICES, or dask-cuda)."
        )
    if args.merge_objects and not detector:
        raise RsdlError("--merge-objects applies to detectors; for class rasters use --merge-vrt.")
    if args.merge_vrt and detector:
        raise RsdlError("--merge-vrt applies to segmentation and regression models; use --merge-objects.")


def _tasks(
    rasters: list[Path], folders: dict[Path, Path], manifest: Manifest, fingerprint: Fingerprint, args
) -> tuple[list[RasterTask], list[Path]]:
    """The rasters to predict (split where asked), and those the manifest has as complete."""
    tasks, complete = [], []
    for raster in rasters:
        if not args.overwrite and manifest.is_complete(raster, fingerprint):
            manifest.record_skipped(raster)
            complete.append(raster)
            continue
        blocks: tuple[tuple[int, int], ...] = ()
        if args.split_rows:
            with rasterio.open(raster) as source:
                height = source.height
            if height > args.split_rows:
                blocks = tuple(row_blocks(height, args.split_rows))
        folders[raster].mkdir(parents=True, exist_ok=True)
        tasks.append(RasterTask(raster, folders[raster], blocks))
    return tasks, complete


class Progress:
    """The counts of a run, and a progress bar on stderr when it is a terminal."""

    def __init__(self, total: int, skipped: int) -> None:
        from tqdm import tqdm

        self.total, self.skipped, self.predicted, self.failed = total, skipped, 0, 0
        self.bar = tqdm(total=total, initial=skipped, unit="raster", disable=not sys.stderr.isatty())
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix(
            done=self.predicted, failed=self.failed, skipped=self.skipped, remaining=self.remaining
        )

    @property
    def remaining(self) -> int:
        return self.total - self.predicted - self.failed - self.skipped

    def add(self, failed: bool) -> None:
        if failed:
            self.failed += 1
        else:
            self.predicted += 1
        self.bar.update(1)
        self._show()

    def counts(self) -> str:
        """E.g. ``[12/20: 11 done, 1 failed, 0 skipped, 8 remaining]``: on each raster's line when
        there is no bar (a log file, a batch job's output)."""
        if not self.bar.disable:
            return ""
        finished = self.predicted + self.failed + self.skipped
        return (
            f" [{finished}/{self.total}: {self.predicted} done, {self.failed} failed, "
            f"{self.skipped} skipped, {self.remaining} remaining]"
        )

    def write(self, line: str, error: bool = False) -> None:
        """A line above the bar (stdout, or stderr for failures and warnings)."""
        self.bar.write(line, file=sys.stderr if error else sys.stdout)

    def close(self) -> None:
        self.bar.close()


def _summary_table(progress: Progress, seconds: float, loads: dict[str, int], workers: int) -> str:
    rate = progress.predicted / seconds * 60 if seconds > 0 else 0.0
    rows = [
        ("predicted", progress.predicted),
        ("skipped (complete in the manifest)", progress.skipped),
        ("failed", progress.failed),
        ("total", progress.total),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'rasters':<{width}}  count", *(f"{name:<{width}}  {count:>5}" for name, count in rows)]
    lines.append(f"{seconds:.1f} s, {rate:.1f} rasters/min predicted on {workers} worker(s)")
    if loads:
        lines.append(
            f"model loaded {sum(loads.values())} time(s) by {len(loads)} worker process(es) "
            f"(most by one: {max(loads.values())})"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _outcomes(
    args, ref: ModelRef, tasks: list[RasterTask], options: PredictOptions, devices: list[str]
) -> Iterator:
    """The run's (task, outcome) stream: in this process, or on a Dask cluster."""
    if args.scheduler is None and args.workers == 1 and ":" not in devices[0]:
        yield run_in_process(ref, tasks, options)
        return
    with dask_client(args.scheduler, args.workers, devices, args.gdal_cache) as client:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield run_on_dask(client, ref, tasks, options, args.retries)


def _remove_leftovers(tasks: list[RasterTask]) -> int:
    """After every task has ended: the temporary files of tasks whose worker died mid-write (the
    task ran again elsewhere), and the row blocks of split rasters that failed."""
    removed = 0
    for task in tasks:
        if task.blocks:
            shutil.rmtree(blocks_root(task), ignore_errors=True)
    for folder in {task.output_dir for task in tasks}:
        for leftover in leftover_temporaries(folder):
            with contextlib.suppress(OSError):
                Path(leftover).unlink()
                removed += 1
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training predict``: 0 when every raster was predicted, 1 otherwise."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        rasters = expand_inputs(args.rasters, args.input_list, args.index, args.index_field)
        folders = output_folders(rasters, args.output_dir)
        options = _options(args)
        devices = [d.strip() for d in args.devices.split(",") if d.strip()] or ["auto"]
        for device in devices:
            backend_device(device)
        model = args.model.absolute()
        spec = load_model(model, 1, "cpu").spec  # refuses a file that is no model, here and now
        detector = spec.model_type in OBJECT_MODEL_TYPES
        _check_scaling(args, devices, detector)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
        ref = ModelRef(str(model), file_sha256(model), backend_device(devices[0]), threads, args.gdal_cache)
        fingerprint = Fingerprint(model.name, ref.sha256, _settings(options))
        args.output_dir.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(args.output_dir, command=shlex.join(["python -m training predict", *argv]))
        tasks, complete = _tasks(rasters, folders, manifest, fingerprint, args)
        progress = Progress(len(rasters), len(complete))
        objects: Counter[str] | None = None  # over every raster predicted, for detectors
        loads: dict[str, int] = {}
        started = time.perf_counter()
        try:
            with _outcomes(args, ref, tasks, options, devices) as outcomes:
                for task, outcome in outcomes:
                    progress.add(isinstance(outcome, TaskFailure))
                    if isinstance(outcome, TaskFailure):
                        manifest.record_failed(task.raster, outcome.message)
                        progress.write(f"FAILED {task.raster}: {outcome.message}{progress.counts()}", True)
                        continue
                    manifest.record_predicted(
                        task.raster,
                        fingerprint,
                        outcome.outputs,
                        outcome.seconds,
                        outcome.worker,
                        {"model_loads": outcome.model_loads, "tiles": outcome.counts.get("run", 0)},
                    )
                    for worker in outcome.worker.split(", "):
                        loads[worker] = max(loads.get(worker, 0), outcome.model_loads)
                    for warning in outcome.warnings:
                        progress.write(f"warning: {task.raster}: {warning}", True)
                    if outcome.objects is not None:
                        objects = (objects or Counter()) + Counter(outcome.objects)
                    outputs = ", ".join(str(p) for p in outcome.outputs)
                    progress.write(f"{task.raster} -> {outputs}: {_line(outcome)}{progress.counts()}")
        finally:
            progress.close()
            manifest.save(finished=True)  # also when interrupted: what is done stays done
        seconds = time.perf_counter() - started
        removed = _remove_leftovers(tasks)
        if removed:
            print(f"Removed {removed} temporary file(s) left by tasks whose worker died.", file=sys.stderr)
        finished = [raster for raster in rasters if manifest.is_complete(raster, fingerprint)]
        if args.merge_vrt:
            print(merge_vrt([manifest.outputs(raster)[0] for raster in finished], args.merge_vrt))
        if args.merge_objects:
            print(
                merge_objects(
                    {raster: manifest.outputs(raster)[0] for raster in finished}, args.merge_objects
                )
            )
    except (RsdlError, ValueError) as error:
        print(f"predict failed: {error}", file=sys.stderr)
        return 1
    workers = 1 if args.scheduler is None and args.workers == 1 else max(len(loads), 1)
    print(_summary_table(progress, seconds, loads, workers))
    print(f"manifest: {manifest.path}")
    if objects is not None:
        print(f"In all: {_per_class(dict(objects))}.")
    return 1 if progress.failed else 0
