"""Benchmark: rsdl:segment against a bare onnxruntime loop and pytorch-toolbelt, side by side.

For each raster size it writes a 3-band uint8 GeoTIFF (tiled 256 x 256, DEFLATE + predictor 2,
as orthophotos and COGs usually come; written in strips so generation never holds the image),
then runs, each in its own child process measured with ``os.wait4`` (peak RSS):

* rsdl: ``processing.run("rsdl:segment")`` in a headless QgsApplication. A child Python rather
  than ``qgis_process`` so the time is the algorithm's own (model load, read, normalise, infer,
  blend, write the class GeoTIFF), with no start-up to subtract, and so ``--profile`` can time
  the engine's stages from inside.
* ort: a bare onnxruntime loop. The raster is read into RAM and the same TilePlan tiles are cut,
  reflect-padded and normalised untimed; only ``session.run`` over the same batches is timed.
  rsdl / ort is the engine's overhead over the model itself (goal: <= 1.15 at the largest size).
* toolbelt: pytorch-toolbelt's in-memory ImageSlicer / TileMerger (pyramid weights) with the same
  onnxruntime model per batch, timed end to end (read, normalise, slice, infer, merge, argmax,
  write). It holds the whole image as float32 plus a C x H x W accumulator, so it only runs
  where its estimated peak fits in the memory available now (and up to ``--toolbelt-max``).

The model is fcn_seg.onnx from scripts/make_test_models.py (3x3 conv 3->8, 3x3 conv 8->8, 1x1
conv 8->3, softmax; dynamic height and width). Its spec says 64 px tiles, but the bench runs
256 px tiles (TILE_SIZE): 64 px tiles with 25 % overlap do 1.8x the pixel work and ~110,000
tiles at 16000 px, which measures per-tile Python overhead rather than a realistic workload
(real segmentation nets run 256-512 px tiles; rsdl's default is 512). Every child uses the
same GDAL block cache (GDAL_CACHEMAX), so peak RSS reflects the engine, not the cache size.
fcn_seg costs ~800 multiply-adds per pixel, so it exposes the engine's own overhead;
``--model-file models/sample_scene_landcover/model.onnx`` benches a real (small) U-Net instead.

Square rasters grow in width too, and the engine's memory is meant to grow with the width (a
band of tile-size rows), never with the height: a last rsdl run on a raster as wide as the
largest and as tall as the smallest shows what the height adds.

The machine may be shared: before each measured run the bench waits (up to ``--settle``
seconds) until other processes use under 10 % of the CPUs, runs again (``--retries``) when they
took more during the run, and the tables show the share they took ("others", of the best run).
All that waiting is capped by ``--wait-budget``; ``--settle 0 --retries 0`` turns it off.

    python tests/bench/bench_inference.py [--sizes 4000,8000,16000] [--tile 256] [--overlap 32]
        [--batch 8] [--repeats 1] [--toolbelt-max 16000] [--threads 0] [--settle 60] [--retries 2]
        [--wait-budget 300] [--profile]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from bench_common import (
    SETTLE_BUSY,
    Measured,
    add_quiet_options,
    available_mib,
    best,
    child_env,
    child_main,
    measure,
    overlap_percent,
    run_helper,
    session_and_spec,
    start_processing,
    status_mib,
    time_calls,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SCRIPT = Path(__file__).resolve()  # the children run this script again

EPSG = 32636
ORIGIN = (400000.0, 100000.0)
PIXEL_SIZE = 0.5  # m: fcn_seg's spec resolution (50 cm), so rsdl runs on the raster's own grid
BLOCK = 256  # input GeoTIFF tile side, and the rows written per generation strip
GDAL_CACHE_MB = 128  # same block cache in every child: enough for a row of input tiles at 16000 px
MODEL = "fcn_seg.onnx"
# toolbelt's peak per padded pixel, at the argmax: the merger's float32 sums + weights (16 B),
# merge()'s result (12 B), numpy's contiguous copy for an argmax over axis 0 (12 B) and its
# int64 result (8 B). Measured: 48 B/px and ~1040 MiB of libraries at 8000 and 16000 px.
TOOLBELT_BYTES_PER_PIXEL = 48
TOOLBELT_BASE_MIB = 1100  # torch + onnxruntime + OpenCV + GDAL imported, rounded up
TOOLBELT_MEMORY_SHARE = 0.6  # run toolbelt only when its estimate is below this share of MemAvailable
# Stage timers of --profile (the rest are labelled where they are wrapped).
READ = "reader: read window (all)"
RUN = "main: TiledInference.run (all)"
FLUSH = "main:   _flush (one batch: normalise..blend)"
WAIT = "main:   waiting for the reader"
SINK = "main:     SegmentationSink.write_rows"
ALONE = "after: session.run alone, same number of calls"


# -- data ---------------------------------------------------------------------------------------


def make_raster(path: Path, width: int, height: int, seed: int = 0) -> None:
    """width x height x 3 uint8: parcels, smooth gradients and noise, so DEFLATE has real work to do."""
    from osgeo import gdal, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    options = [
        "TILED=YES",
        f"BLOCKXSIZE={BLOCK}",
        f"BLOCKYSIZE={BLOCK}",
        "COMPRESS=DEFLATE",
        "PREDICTOR=2",
        "PHOTOMETRIC=RGB",
        "BIGTIFF=IF_SAFER",
        "NUM_THREADS=ALL_CPUS",
    ]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 3, gdal.GDT_Byte, options)
    dataset.SetGeoTransform((ORIGIN[0], PIXEL_SIZE, 0.0, ORIGIN[1], 0.0, -PIXEL_SIZE))
    dataset.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 170, (7, 3)).astype(np.float32)
    x = np.arange(width, dtype=np.float32)
    parcel_x = (x // 331).astype(np.int32) * 3
    for top in range(0, height, BLOCK):
        rows = min(BLOCK, height - top)
        y = np.arange(top, top + rows, dtype=np.float32)[:, None]
        parcel = (parcel_x + (y // 277).astype(np.int32) * 5) % len(palette)
        noise = rng.integers(-12, 13, (3, rows, width), dtype=np.int16)
        strip = np.empty((3, rows, width), dtype=np.uint8)
        for band in range(3):
            smooth = 35 * np.sin(x / (900 + 150 * band) + band) * np.cos(y / (700 + 110 * band))
            smooth += 20 * np.sin((x + 2 * y) / (260 + 40 * band))
            strip[band] = np.clip(palette[parcel, band] + smooth + noise[band], 0, 255)
        dataset.WriteRaster(0, top, width, rows, strip.tobytes(), width, rows, gdal.GDT_Byte, [1, 2, 3])
        dataset.FlushCache()  # write each finished row of tiles now: keeps generation memory flat
    dataset = None


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> int:
    from rsdl_qgis_plugin.core.tiling.plan import TilePlan

    return len(TilePlan(width, height, tile, overlap))


def toolbelt_estimate_mib(size: int, tile: int, overlap: int) -> float:
    """Estimated peak RSS of the toolbelt pipeline (padded as ImageSlicer pads)."""
    step = tile - overlap
    padded = max(1, math.ceil((size - overlap) / step)) * step + overlap
    return TOOLBELT_BYTES_PER_PIXEL * padded**2 / 2**20 + TOOLBELT_BASE_MIB


# -- children -------------------------------------------------------------------------------------


def _instrument() -> dict[str, list[float]]:
    """Wrap the engine's stages with timers: label -> [seconds, thread CPU seconds, calls].

    Bench-only monkeypatching, in the child; the engine's code is untouched.
    """
    from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
    from rsdl_qgis_plugin.core.tiling import blending
    from rsdl_qgis_plugin.inference import backends, engine, sinks, tile_stream
    from rsdl_qgis_plugin.qgis_io import provider_reader, raster_writer, stripe_reader

    timers: dict[str, list[float]] = {}
    for owner, name, label in (
        (provider_reader.ProviderWindowReader, "read", READ),
        (provider_reader.ProviderWindowReader, "_band", "reader:   provider.block + copy + mask"),
        (stripe_reader.GdalStripeReader, "read", READ + " (GDAL stripes)"),
        (stripe_reader.GdalStripeReader, "_read_stripe", "reader:   GDAL stripe read"),
        (tile_stream, "pad_tile", "reader: pad_tile"),
        (engine.TiledInference, "__init__", "main: TiledInference() (plan, probe run)"),
        (engine.TiledInference, "run", RUN),
        (engine.TiledInference, "_flush", FLUSH),
        (ModelSpec, "normalize", "main:     normalise"),
        (backends.OnnxBackend, "run", "main:     backend.run"),
        (backends.OnnxBackend, "_forward", "main:       session.run"),
        (engine, "_as_probabilities", "main:     _as_probabilities (min/max check)"),
        (engine.HeadLayout, "to_tile", "main:     HeadLayout.to_tile"),
        (blending.StreamingBlender, "add", "main:     StreamingBlender.add"),
        (blending.StreamingBlender, "_release_rows", "main:     StreamingBlender._release_rows"),
        (sinks.SegmentationSink, "write_rows", SINK),
        (sinks, "classes_and_confidence", "main:       classes_and_confidence"),
        (raster_writer.GeoTiffRowWriter, "_flush", "main:       GeoTIFF strip write (DEFLATE)"),
        (raster_writer.GeoTiffRowWriter, "_finish", "main: GeoTIFF close (last strip, flush)"),
    ):
        time_calls(timers, owner, name, label)
        timers[label] = [0.0, 0.0, 0]  # keeps the order for the report
    timers[WAIT] = [0.0, 0.0, 0]

    # Time the main thread spends waiting for the reader thread.
    original_init = tile_stream.TileStream.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        get = self._queue.get

        def timed_get(*get_args: Any, **get_kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return get(*get_args, **get_kwargs)
            finally:
                entry = timers[WAIT]
                entry[0] += time.perf_counter() - start
                entry[1] += time.thread_time() - cpu
                entry[2] += 1

        self._queue.get = timed_get

    tile_stream.TileStream.__init__ = init
    return timers


def child_rsdl(args: argparse.Namespace) -> dict[str, Any]:
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    processing = start_processing()
    timers = _instrument() if args.instrument else None
    before_mib = status_mib("VmRSS")
    parameters = {
        "INPUT": args.raster,
        "MODEL": args.model,
        "TILE_SIZE": args.tile,
        "OVERLAP": overlap_percent(args.tile, args.overlap),
        "BATCH_SIZE": args.batch,
        "THREADS": args.threads,
        "RESAMPLE": False,
        "OUTPUT": args.output,
    }
    start = time.perf_counter()
    result = processing.run(
        "rsdl:segment", parameters, context=QgsProcessingContext(), feedback=QgsProcessingFeedback()
    )
    seconds = time.perf_counter() - start
    if timers is not None:
        timers[ALONE] = _session_alone(args, int(timers["main:       session.run"][2]))
    return {
        "seconds": seconds,
        "before_mib": before_mib,
        "tiles": int(result["TILES"]),
        "provider": result["EXECUTION_PROVIDER"],
        "timers": dict(timers) if timers is not None else None,
    }


def _session_alone(args: argparse.Namespace, calls: int) -> list[float]:
    """session.run as often as the engine called it, on full batches, with nothing else running:
    measured seconds after the engine in the same process, it shows what the engine's other
    threads and work cost the model itself."""
    session, spec = session_and_spec(args.model, args.threads)
    name = session.get_inputs()[0].name
    pixels = np.random.default_rng(0).integers(0, 256, (args.batch, 3, args.tile, args.tile), dtype=np.uint8)
    batch = spec.normalize(pixels)
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        session.run(None, {name: batch})
    return [time.perf_counter() - start, time.thread_time() - cpu, calls]


def child_ort(args: argparse.Namespace) -> dict[str, Any]:
    from osgeo import gdal

    from rsdl_qgis_plugin.core.tiling.plan import TilePlan, pad_tile

    image = gdal.Open(args.raster).ReadAsArray()  # (bands, rows, cols), untimed
    height, width = image.shape[1:]
    session, spec = session_and_spec(args.model, args.threads)
    name = session.get_inputs()[0].name
    plan = TilePlan(width, height, args.tile, args.overlap)
    seconds = 0.0
    # Cut and normalise one batch at a time (untimed), as the engine does: pre-cutting every
    # tile would need 4 GiB of float32 at 16000 px and change nothing in session.run.
    for first in range(0, len(plan), args.batch):
        tiles = []
        for tile in plan.tiles[first : first + args.batch]:
            row, col, rows, cols = tile.read_window(width, height)
            tiles.append(pad_tile(image[:, row : row + rows, col : col + cols], tile.padding(width, height)))
        batch = spec.normalize(np.stack(tiles))
        start = time.perf_counter()
        session.run(None, {name: batch})
        seconds += time.perf_counter() - start
    return {"seconds": seconds, "tiles": len(plan)}


def child_toolbelt(args: argparse.Namespace) -> dict[str, Any]:
    """pytorch-toolbelt's README pipeline, freeing each full-size array once the next step has it."""
    import cv2
    import torch
    from osgeo import gdal
    from pytorch_toolbelt.inference.tiles import ImageSlicer, TileMerger

    phases: dict[str, float] = {}
    start = mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    dataset = gdal.Open(args.raster)
    image = np.ascontiguousarray(dataset.ReadAsArray().transpose(1, 2, 0))  # HWC, as toolbelt wants
    session, spec = session_and_spec(args.model, args.threads)
    name = session.get_inputs()[0].name
    channels = session.get_outputs()[0].shape[1]
    phase("read")
    pixels = image.astype(np.float32)
    del image
    pixels /= np.float32(spec.max_pixel_value)
    pixels -= np.asarray(spec.standardization_mean, dtype=np.float32)
    pixels /= np.asarray(spec.standardization_std, dtype=np.float32)
    phase("normalise")
    slicer = ImageSlicer(
        pixels.shape, tile_size=args.tile, tile_step=args.tile - args.overlap, weight="pyramid"
    )
    tiles = slicer.split(pixels, border_type=cv2.BORDER_REFLECT101)  # views of one padded copy
    del pixels
    merger = TileMerger(slicer.target_shape, channels, slicer.weight)
    phase("slice")
    model_seconds = 0.0
    for first in range(0, len(tiles), args.batch):
        batch = np.ascontiguousarray(np.stack(tiles[first : first + args.batch]).transpose(0, 3, 1, 2))
        model_start = time.perf_counter()
        output = session.run(None, {name: batch})[0]
        model_seconds += time.perf_counter() - model_start
        merger.integrate_batch(torch.from_numpy(output), slicer.crops[first : first + args.batch])
    del tiles
    phase("infer+integrate")
    # numpy's argmax over channels: torch's argmax(dim=0) is 5x slower on a C x H x W tensor.
    classes = merger.merge().numpy().argmax(axis=0).astype(np.uint8)
    del merger
    classes = slicer.crop_to_orignal_size(classes)
    phase("merge+argmax")
    _write_classes(args.output, classes, dataset)
    phase("write")
    return {
        "seconds": time.perf_counter() - start,
        "model_seconds": model_seconds,
        "phases": phases,
        "tiles": len(slicer.crops),
    }


def _write_classes(path: str, classes: np.ndarray, like: Any) -> None:
    """The class raster with the options rsdl's writer uses (DEFLATE strips of 32 rows)."""
    from osgeo import gdal

    options = ["COMPRESS=DEFLATE", "PREDICTOR=2", "TILED=NO", "BLOCKYSIZE=32", "BIGTIFF=IF_SAFER"]
    height, width = classes.shape
    out = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Byte, options)
    out.SetGeoTransform(like.GetGeoTransform())
    out.SetProjection(like.GetProjection())
    out.GetRasterBand(1).WriteArray(np.ascontiguousarray(classes))
    out = None


def child_models(args: argparse.Namespace) -> dict[str, Any]:
    from scripts.make_test_models import write_test_models

    return {"seconds": 0.0, "path": str(write_test_models(args.output)[MODEL])}


def child_raster(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    make_raster(Path(args.raster), args.width, args.height)
    return {"seconds": time.perf_counter() - start}


CHILDREN: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "rsdl": child_rsdl,
    "ort": child_ort,
    "toolbelt": child_toolbelt,
    # Helpers, not measured. They run in children because exec records the parent's peak RSS in
    # each child's ru_maxrss: the parent must stay smaller than anything it measures.
    "models": child_models,
    "raster": child_raster,
}


# -- parent -------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    tiles: int
    rsdl: Measured
    ort: Measured
    toolbelt: Measured | None
    toolbelt_note: str
    profile: Measured | None = None


def child_options(raster: Path, model: Path, output: Path, args: argparse.Namespace) -> list[str]:
    settings = {"tile": args.tile, "overlap": args.overlap, "batch": args.batch, "threads": args.threads}
    options = ["--raster", str(raster), "--model", str(model), "--output", str(output)]
    for name, value in settings.items():
        options += [f"--{name}", str(value)]
    return options


def write_raster(work: Path, env: dict[str, str], width: int, height: int) -> Path:
    raster = work / f"input_{width}x{height}.tif"
    options = ["--raster", str(raster), "--width", str(width), "--height", str(height)]
    written = run_helper(SCRIPT, "raster", options, work, env)
    print(
        f"  {width} x {height}: raster written in {written['seconds']:.1f} s "
        f"({raster.stat().st_size / 2**20:.0f} MiB on disk, {3 * width * height / 2**20:.0f} MiB raw)",
        flush=True,
    )
    return raster


def bench_size(
    size: int, args: argparse.Namespace, work: Path, model: Path, env: dict[str, str]
) -> SizeResult:
    raster = write_raster(work, env, size, size)
    output = work / "classes.tif"
    common = child_options(raster, model, output, args)

    def run(mode: str, options: list[str]) -> Measured:
        try:
            return measure(SCRIPT, mode, options, work, env, args)
        finally:
            output.unlink(missing_ok=True)

    runs: dict[str, list[Measured]] = {"rsdl": [], "ort": []}
    for repeat in range(args.repeats):  # alternate the order so drift hits both alike
        for mode in ("rsdl", "ort") if repeat % 2 == 0 else ("ort", "rsdl"):
            runs[mode].append(run(mode, common))
    tiles = plan_tiles(size, size, args.tile, args.overlap)
    if runs["rsdl"][0].result["tiles"] != tiles:
        raise RuntimeError(f"rsdl ran {runs['rsdl'][0].result['tiles']} tiles, the plan has {tiles}")

    toolbelt, note = None, ""
    estimate = toolbelt_estimate_mib(size, args.tile, args.overlap)
    available = available_mib()
    if size > args.toolbelt_max:
        note = f"skipped: above --toolbelt-max {args.toolbelt_max}"
    elif estimate > TOOLBELT_MEMORY_SHARE * available:
        note = f"skipped: needs ~{estimate / 1024:.1f} GiB, {available / 1024:.1f} GiB available"
    else:
        try:
            toolbelt = run("toolbelt", common)
        except MemoryError as error:
            note = f"killed: {error}"

    profile = None
    if args.profile and size == max(args.size_list):
        profile = run("rsdl", [*common, "--instrument"])
    raster.unlink()
    return SizeResult(size, tiles, best(runs["rsdl"]), best(runs["ort"]), toolbelt, note, profile)


def bench_height(args: argparse.Namespace, work: Path, model: Path, env: dict[str, str]) -> Measured:
    """rsdl on a raster as wide as the largest size and as tall as the smallest."""
    width, height = max(args.size_list), min(args.size_list)
    raster = write_raster(work, env, width, height)
    output = work / "classes.tif"
    try:
        return measure(SCRIPT, "rsdl", child_options(raster, model, output, args), work, env, args)
    finally:
        output.unlink(missing_ok=True)
        raster.unlink()


def print_report(results: list[SizeResult], wide: Measured | None, args: argparse.Namespace) -> None:
    threads = args.threads or "onnxruntime's default"
    model = "/".join(args.model_file.parts[-2:]) if args.model_file else MODEL
    print()
    print(
        f"segment: {model}, tiles {args.tile} px, overlap {args.overlap} px, batch {args.batch}, "
        f"pyramid blending; best of {args.repeats};\n"
        f"GDAL_CACHEMAX={'unset (GDAL default)' if args.gdal_default_cache else f'{GDAL_CACHE_MB} MB'}; "
        "model threads: "
        f"{threads}; {os.cpu_count()} CPUs"
    )
    print(
        f"{'raster':>13} {'tiles':>6} {'rsdl s':>8} {'ort s':>8} {'ratio':>6} {'others':>7}"
        f" {'rsdl MiB':>9} {'before':>7} {'engine':>7} {'raw MiB':>8}"
    )
    for r in results:
        before = r.rsdl.result["before_mib"]
        others = max(r.rsdl.other_cpu, r.ort.other_cpu)
        print(
            f"{r.size:>6} x {r.size:<6}{r.tiles:>6} {r.rsdl.seconds:>8.2f} {r.ort.seconds:>8.2f}"
            f" {r.rsdl.seconds / r.ort.seconds:>6.2f} {others:>7.0%}"
            f" {r.rsdl.peak_mib:>9.0f} {before:>7.0f} {r.rsdl.peak_mib - before:>7.0f}"
            f" {3 * r.size**2 / 2**20:>8.0f}"
        )
    if wide is not None:
        width, height = max(args.size_list), min(args.size_list)
        before = wide.result["before_mib"]
        print(
            f"{width:>6} x {height:<6}{wide.result['tiles']:>6} {wide.seconds:>8.2f} {'':>8} {'':>6}"
            f" {wide.other_cpu:>7.0%} {wide.peak_mib:>9.0f} {before:>7.0f} {wide.peak_mib - before:>7.0f}"
            f" {3 * width * height / 2**20:>8.0f}"
        )
    print(
        "rsdl s: processing.run('rsdl:segment') (model load, read, normalise, infer, blend, write the "
        "class GeoTIFF);\nort s: session.run alone over the same tiles, already in RAM; ratio = rsdl / ort. "
        "others: CPU share other\nprocesses used during those runs (noise). rsdl MiB: peak RSS of the "
        "rsdl child (os.wait4); before: its RSS\nbefore the run (QGIS and processing initialised); "
        "engine = the difference. raw MiB: the input as one uint8 array."
    )

    print()
    print("pytorch-toolbelt ImageSlicer/TileMerger (whole image in RAM) vs rsdl, same model via onnxruntime")
    print(
        f"{'raster':>13} {'tb s':>8} {'tb ort s':>9} {'rsdl s':>8} {'tb/rsdl':>8} {'others':>7}"
        f" {'tb MiB':>8} {'est MiB':>8} {'rsdl MiB':>9} {'tb/rsdl':>8}"
    )
    for r in results:
        head = f"{r.size:>6} x {r.size:<6}"
        estimate = toolbelt_estimate_mib(r.size, args.tile, args.overlap)
        if r.toolbelt is None:
            print(f"{head} {r.toolbelt_note} (estimate {estimate:.0f} MiB)")
            continue
        tb = r.toolbelt
        print(
            f"{head} {tb.seconds:>8.2f} {tb.result['model_seconds']:>9.2f} {r.rsdl.seconds:>8.2f}"
            f" {tb.seconds / r.rsdl.seconds:>8.2f} {tb.other_cpu:>7.0%} {tb.peak_mib:>8.0f} {estimate:>8.0f}"
            f" {r.rsdl.peak_mib:>9.0f} {tb.peak_mib / r.rsdl.peak_mib:>8.1f}"
        )
    print(
        "tb s: toolbelt end to end (read, normalise, slice, infer, merge, argmax, write); "
        "tb ort s: its session.run;\nest MiB: its peak estimated before the run (decides whether it runs)."
    )
    ran = [r for r in results if r.toolbelt is not None]
    if ran:
        r = ran[-1]
        phases = ", ".join(f"{name} {value:.1f}" for name, value in r.toolbelt.result["phases"].items())
        print(f"toolbelt phases at {r.size} px (s): {phases}")

    largest = results[-1]
    ratio = largest.rsdl.seconds / largest.ort.seconds
    print()
    print(
        f"GOAL time:   rsdl / onnxruntime at {largest.size} px = {ratio:.2f} (goal <= 1.15): "
        f"{'MET' if ratio <= 1.15 else 'NOT MET'}"
    )
    peaks = [r.rsdl.peak_mib for r in results]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    growth = (results[-1].size / results[0].size) ** 2
    print(
        f"GOAL memory: rsdl peak RSS {min(peaks):.0f}-{max(peaks):.0f} MiB over "
        f"{', '.join(str(r.size) for r in results)} px squares: spread {spread:.0%} while the raster grows "
        f"{growth:.0f}x (goal: flat)"
    )
    if wide is not None:
        square = max(results, key=lambda r: r.size)
        added = square.rsdl.peak_mib - wide.peak_mib
        print(
            f"             same width {square.size}, height {min(args.size_list)} -> {square.size}: "
            f"{wide.peak_mib:.0f} -> {square.rsdl.peak_mib:.0f} MiB ({added:+.0f} MiB, "
            f"{added / wide.peak_mib:+.0%}); the rest of the spread comes with the width"
        )
    if ran:
        r = ran[-1]
        print(
            f"toolbelt at {r.size} px: {r.toolbelt.seconds / r.rsdl.seconds:.2f}x rsdl's time, "
            f"{r.toolbelt.peak_mib / r.rsdl.peak_mib:.1f}x its peak memory "
            f"({r.toolbelt.peak_mib:.0f} vs {r.rsdl.peak_mib:.0f} MiB)"
        )
    measured = [m for r in results for m in (r.rsdl, r.ort, r.toolbelt) if m is not None]
    noisy = max(m.other_cpu for m in measured)
    if noisy > SETTLE_BUSY:
        print(f"note: other processes took up to {noisy:.0%} of the CPUs during these runs; times are noisy")


def print_profile(result: SizeResult) -> None:
    """The stage timers, in call-tree order, plus the time no timer covers."""
    assert result.profile is not None
    timers = {label: tuple(values) for label, values in result.profile.result["timers"].items()}
    total = result.profile.seconds

    def seconds(label: str) -> float:
        return timers.get(label, (0.0, 0.0, 0))[0]

    def depth(label: str) -> int:
        name = label.split(":", 1)[1]
        return (len(name) - len(name.lstrip())) // 2

    main = [label for label in timers if label.startswith("main:")]
    top = sum(seconds(label) for label in main if depth(label) == 0)
    in_flush = sum(seconds(label) for label in main if depth(label) == 2)
    derived = {
        "main:   rest of run (tile loop, last band's rows)": seconds(RUN) - seconds(FLUSH) - seconds(WAIT),
        "main:     rest of _flush (np.stack, per-tile loop)": seconds(FLUSH) - in_flush,
        "main: outside the engine (load model, open layer, writers)": total - top,
    }
    print()
    print(
        f"profile: rsdl:segment at {result.size} px with stage timers (an extra run, {total:.1f} s, others "
        f"{result.profile.other_cpu:.0%});\nindented lines are part of the first less indented line above "
        "them; cpu: the calling thread's CPU time"
    )
    print(f"  {'stage':<58} {'wall s':>8} {'%':>6} {'cpu s':>7} {'calls':>7}")
    for label, (wall, cpu, calls) in timers.items():
        if label != ALONE:
            print(f"  {label:<58} {wall:>8.2f} {100 * wall / total:>5.1f}% {cpu:>7.2f} {int(calls):>7}")
    for label, wall in derived.items():
        print(f"  {label:<58} {wall:>8.2f} {100 * wall / total:>5.1f}%")
    wall, cpu, calls = timers[ALONE]
    print(f"  {ALONE:<58} {wall:>8.2f} {100 * wall / total:>5.1f}% {cpu:>7.2f} {int(calls):>7}")
    print(
        "  The reader thread runs concurrently with the main thread; 'waiting for the reader' is main-\n"
        "  thread time blocked on it. session.run's cpu leaves out onnxruntime's pool threads. The last\n"
        "  band's SegmentationSink.write_rows runs after _flush, so 'rest of _flush' can be slightly < 0.\n"
        "  'after:' runs once the algorithm has finished (not part of its time): the model alone, on\n"
        "  full random batches, in the same process; set against 'session.run' it shows what the\n"
        "  engine's other work and threads cost the model itself."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="4000,8000,16000", help="raster sizes (pixels a side), comma separated"
    )
    parser.add_argument(
        "--tile", type=int, default=256, help="tile size in pixels (rsdl:segment's TILE_SIZE)"
    )
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels")
    parser.add_argument("--batch", type=int, default=8, help="tiles per model call")
    parser.add_argument("--repeats", type=int, default=1, help="runs of rsdl and ort per size (best of)")
    parser.add_argument(
        "--toolbelt-max", type=int, default=16000, help="largest size to run the toolbelt pipeline at"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="model CPU threads for all three (0: onnxruntime's default)"
    )
    add_quiet_options(parser)
    parser.add_argument("--profile", action="store_true", help="time the engine's stages at the largest size")
    parser.add_argument(
        "--model-file",
        type=Path,
        help="an ONNX segmentation model for 3-band 8-bit input at 50 cm (or none) to bench instead of "
        "fcn_seg.onnx, e.g. models/sample_scene_landcover/model.onnx: a real net's share of the time",
    )
    # Internal: the children.
    parser.add_argument(
        "--gdal-default-cache",
        action="store_true",
        help="leave GDAL's block cache at its default (5%% of RAM) instead of GDAL_CACHEMAX=128 MB, "
        "as in a QGIS session: memory must stay flat all the same",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--raster", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instrument", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(CHILDREN, args)
        return
    args.size_list = sorted(int(size) for size in args.sizes.split(","))
    overlap_percent(args.tile, args.overlap)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rsdl-bench-infer-") as work_dir:
        work = Path(work_dir)
        env = child_env(work, None if args.gdal_default_cache else GDAL_CACHE_MB)
        if args.model_file:
            model = args.model_file.resolve()
        else:
            model = Path(run_helper(SCRIPT, "models", ["--output", str(work / "models")], work, env)["path"])
        print(f"bench_inference: sizes {args.sizes}, work folder {work}", flush=True)
        results = []
        for size in args.size_list:
            results.append(bench_size(size, args, work, model, env))
            r = results[-1]
            toolbelt = f"{r.toolbelt.seconds:.1f} s" if r.toolbelt else r.toolbelt_note
            print(
                f"  {size} x {size}: rsdl {r.rsdl.seconds:.1f} s, ort {r.ort.seconds:.1f} s, "
                f"toolbelt {toolbelt}",
                flush=True,
            )
        wide = bench_height(args, work, model, env) if len(set(args.size_list)) > 1 else None
    print_report(results, wide, args)
    if args.profile:
        print_profile(results[-1])
    measured = [m for r in results for m in (r.rsdl, r.ort, r.toolbelt, r.profile) if m is not None]
    waited = sum(m.waited for m in [*measured, *([wide] if wide else [])])
    print(
        f"\ntotal runtime {time.perf_counter() - started:.0f} s, of which {waited:.0f} s waiting for "
        "other processes to go quiet"
    )


if __name__ == "__main__":
    main()
