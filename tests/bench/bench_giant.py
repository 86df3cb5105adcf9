"""Benchmark: one giant raster (40,000 x 40,000 x 3 uint8 = 1.6 Gpx) through rsdl:segment, against a
bare onnxruntime loop over the same tiles; and rsdl:segment's peak memory with GDAL's default block
cache against GDAL_CACHEMAX=128 at 16384 px.

The input: a 3-band uint8 GeoTIFF, tiled 256 x 256, DEFLATE + predictor 2, 0.5 m pixels in
EPSG:32636 (the model's 50 cm, so rsdl:segment runs on the raster's own grid, no resampling). It is
written in strips of one tile row (generation never holds the image), with a cheap structured
pattern: parcels of six land covers (fields, meadow, forest, water, bare soil, built-up blocks with
roofs), a road grid, smooth shading and a small repeating texture. It compresses to an eighth of
its raw size (0.54 GiB at 40000 px) and the model finds all five of its classes in it. With
``--keep`` the rasters stay in the work folder (``--work-dir``) and the next run reuses them.

The model: models/sample_scene_landcover/model.onnx (U-Net, MobileNetV3-small encoder, 5 classes),
run at its own defaults as rsdl:segment resolves them (core/tiling/policy.py: its 256 px tiles,
the default 15 % overlap = 38 px, the Segmentor batch of 4); the same values go to both sides.

Each measured run is a child process, its peak RSS from ``os.wait4`` (bench_common):

* rsdl: ``processing.run("rsdl:segment")`` in a headless QgsApplication, class GeoTIFF out (model
  load, read, normalise, infer, blend, write). The giant run leaves GDAL's block cache at its
  default (GDAL_CACHEMAX unset: 5 % of RAM), as in a QGIS session.
* ort: a bare onnxruntime loop over the same TilePlan tiles and batches. The raster is streamed one
  stripe of tile rows at a time (never held whole; GDAL_CACHEMAX=128 so GDAL keeps the blocks the
  next stripe needs); cutting, reflect padding and normalising are untimed, only ``session.run``
  is timed. rsdl / ort is the engine's overhead over the model itself.
* cache pair (``--cache-size``, 16384): rsdl:segment once with GDAL_CACHEMAX unset in the child's
  environment (GDAL's default, whatever the caller's environment says) and once with
  GDAL_CACHEMAX=128. Memory must not depend on the cache size: rsdl reads and writes in strips.

Each rsdl child also reports GDAL's block cache as it saw it (its maximum, and its peak use,
sampled every 0.1 s during processing.run), and a helper child counts the classes of the giant output.

The machine may be shared: before each measured run the bench waits (up to ``--settle`` seconds)
for other processes to go quiet; the table shows the CPU share they took during each run
("others"). A giant run takes tens of minutes on 2 cores, so it is not rerun by default
(``--retries 0``).

    python tests/bench/bench_giant.py [--size 40000] [--cache-size 16384] [--threads 0]
        [--work-dir DIR] [--keep] [--skip-giant] [--settle 60] [--retries 0] [--wait-budget 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from bench_common import (
    Measured,
    add_quiet_options,
    child_env,
    child_main,
    measure,
    overlap_percent,
    run_helper,
    session_and_spec,
    start_processing,
    status_mib,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SCRIPT = Path(__file__).resolve()  # the children run this script again

MODEL = REPO / "models" / "sample_scene_landcover" / "model.onnx"
EPSG = 32636
ORIGIN = (400000.0, 100000.0)
PIXEL_SIZE = 0.5  # m: the model's 50 cm, so rsdl:segment does not resample
BLOCK = 256  # input GeoTIFF tile side, and the rows written per generation strip
PATTERN = "v1"  # in the file name: a changed pattern never reuses a kept raster
CACHE_MB = 128  # the GDAL block cache of the ort child and of the second cache-pair run
# Land covers (RGB) of the parcels; built-up parcels get roofs, a road grid crosses everything.
PALETTE = np.array(
    [[62, 104, 48], [88, 128, 60], [20, 40, 60], [150, 124, 96], [118, 112, 104], [76, 96, 52]],
    dtype=np.int16,
)
BUILT_UP = 4
ROAD = (128, 128, 126)
ROOF = (168, 72, 58)
TEXTURE = (61, 67)  # rows, columns of the repeating texture patch


# -- data ---------------------------------------------------------------------------------------


class Pattern:
    """Strips of the synthetic scene; what depends on the column alone is computed once."""

    def __init__(self, width: int, seed: int = 0) -> None:
        x = np.arange(width, dtype=np.int32)
        self.width = width
        self.col_parcel = x // 331
        self.col_roof = ((x % 48) < 28) & ((x % 331) > 20)
        self.col_road = (x % 1489) < 14
        self.col_shade = (18 * np.sin(x / 900.0)).astype(np.float32)
        patch = np.random.default_rng(seed).integers(-9, 10, TEXTURE).astype(np.int16)
        self.texture = patch[:, x % TEXTURE[1]]  # (TEXTURE rows, width)

    def strip(self, top: int, rows: int) -> np.ndarray:
        """(3, rows, width) uint8 of the scene's rows ``top`` .. ``top + rows``."""
        y = np.arange(top, top + rows, dtype=np.int32)[:, None]
        row_parcel = y // 277
        parcel = (self.col_parcel * 3 + row_parcel * 5 + self.col_parcel * row_parcel) % len(PALETTE)
        roofs = (parcel == BUILT_UP) & self.col_roof & ((y % 44) < 24) & ((y % 277) > 20)
        roads = self.col_road | ((y % 1291) < 14)
        shade = (self.col_shade * np.cos(y / 700.0).astype(np.float32)).astype(np.int16)
        shade += self.texture[y[:, 0] % TEXTURE[0]]
        strip = np.empty((3, rows, self.width), dtype=np.uint8)
        for band in range(3):
            value = PALETTE[:, band][parcel]
            value[roofs] = ROOF[band]
            value[roads] = ROAD[band]
            value += shade
            strip[band] = np.clip(value, 0, 255)
        return strip


def make_raster(path: Path, size: int) -> None:
    """size x size x 3 uint8 (module docstring), written strip by strip under a temporary name and
    renamed once complete, so a kept file is always whole."""
    from osgeo import gdal, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    options = [
        *("TILED=YES", f"BLOCKXSIZE={BLOCK}", f"BLOCKYSIZE={BLOCK}", "PHOTOMETRIC=RGB"),
        *("COMPRESS=DEFLATE", "PREDICTOR=2", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"),
    ]
    partial = path.with_name(path.name + ".partial")
    dataset = gdal.GetDriverByName("GTiff").Create(str(partial), size, size, 3, gdal.GDT_Byte, options)
    dataset.SetGeoTransform((ORIGIN[0], PIXEL_SIZE, 0.0, ORIGIN[1], 0.0, -PIXEL_SIZE))
    dataset.SetProjection(srs.ExportToWkt())
    pattern = Pattern(size)
    for top in range(0, size, BLOCK):
        rows = min(BLOCK, size - top)
        strip = pattern.strip(top, rows)
        dataset.WriteRaster(0, top, size, rows, strip.tobytes(), size, rows, gdal.GDT_Byte, [1, 2, 3])
        dataset.FlushCache()  # write each finished row of tiles now: keeps generation memory flat
    dataset = None
    partial.rename(path)


# -- children -------------------------------------------------------------------------------------


def child_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The tile size, overlap and batch rsdl:segment runs the model at when none is given."""
    from rsdl_qgis_plugin.core.tiling import policy

    session, spec = session_and_spec(args.model, args.threads)
    shape = session.get_inputs()[0].shape[2:]
    input_size = tuple(side if isinstance(side, int) else None for side in shape)
    tile = policy.tile_size(spec, input_size, None)
    return {
        "tile": tile,
        "overlap": policy.overlap_pixels(spec, tile, None),
        "batch": policy.default_batch_size(spec.model_type),
    }


def child_raster(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    make_raster(Path(args.raster), args.size)
    return {"seconds": time.perf_counter() - start}


def child_rsdl(args: argparse.Namespace) -> dict[str, Any]:
    from osgeo import gdal
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    processing = start_processing()
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
    cache_peak, done = [0], threading.Event()

    def watch_cache() -> None:  # GDAL's block cache in use, sampled: where memory may go
        while not done.wait(0.1):
            cache_peak[0] = max(cache_peak[0], gdal.GetCacheUsed())

    threading.Thread(target=watch_cache, daemon=True).start()
    start = time.perf_counter()
    result = processing.run(
        "rsdl:segment", parameters, context=QgsProcessingContext(), feedback=QgsProcessingFeedback()
    )
    seconds = time.perf_counter() - start
    done.set()
    return {
        "seconds": seconds,
        "before_mib": before_mib,
        "tiles": int(result["TILES"]),
        "cache_max_mib": gdal.GetCacheMax() / 2**20,
        "cache_peak_mib": cache_peak[0] / 2**20,
        "environment_cache": os.environ.get("GDAL_CACHEMAX"),
    }


def child_ort(args: argparse.Namespace) -> dict[str, Any]:
    """session.run over the TilePlan's tiles, the raster read one stripe of tile rows at a time."""
    from osgeo import gdal

    from rsdl_qgis_plugin.core.tiling.plan import TilePlan, pad_tile

    dataset = gdal.Open(args.raster)
    width, height = dataset.RasterXSize, dataset.RasterYSize
    session, spec = session_and_spec(args.model, args.threads)
    name = session.get_inputs()[0].name
    plan = TilePlan(width, height, args.tile, args.overlap)
    seconds = 0.0
    stripe, stripe_rows = None, None
    batch: list[np.ndarray] = []
    for index, tile in enumerate(plan.tiles):
        row, col, rows, cols = tile.read_window(width, height)
        if stripe_rows != (row, rows):  # a new tile row: read its rows, whole width (untimed)
            stripe, stripe_rows = dataset.ReadAsArray(0, row, width, rows), (row, rows)
        batch.append(pad_tile(stripe[:, :, col : col + cols], tile.padding(width, height)))
        if len(batch) == args.batch or index == len(plan) - 1:
            pixels = spec.normalize(np.stack(batch))
            batch = []
            start = time.perf_counter()
            session.run(None, {name: pixels})
            seconds += time.perf_counter() - start
    return {"seconds": seconds, "tiles": len(plan)}


def child_classes(args: argparse.Namespace) -> dict[str, Any]:
    """Pixel count per value of a class raster, read in strips."""
    from osgeo import gdal

    dataset = gdal.Open(args.raster)  # held: a band outliving its dataset crashes GDAL's Python
    band = dataset.GetRasterBand(1)
    counts = np.zeros(256, dtype=np.int64)
    for top in range(0, band.YSize, 1024):
        rows = min(1024, band.YSize - top)
        counts += np.bincount(band.ReadAsArray(0, top, band.XSize, rows).ravel(), minlength=256)
    return {"seconds": 0.0, "counts": {int(value): int(n) for value, n in enumerate(counts) if n}}


CHILDREN: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "rsdl": child_rsdl,
    "ort": child_ort,
    # Helpers, not measured. They run in children because exec records the parent's peak RSS in
    # each child's ru_maxrss: the parent must stay smaller than anything it measures.
    "defaults": child_defaults,
    "raster": child_raster,
    "classes": child_classes,
}


# -- parent -------------------------------------------------------------------------------------


@dataclass
class Row:
    size: int
    mode: str
    measured: Measured
    ratio: float | None = None


class Bench:
    """The runs of one bench invocation: the rasters live in ``rasters`` (kept with --keep), each
    child's environment, logs and results in a fresh folder of its own under ``runs``."""

    def __init__(self, args: argparse.Namespace, rasters: Path, runs: Path) -> None:
        self.args = args
        self.rasters = rasters
        self.runs = runs
        self.envs: dict[str, dict[str, str]] = {}
        self.written: list[Path] = []

    def env(self, cache: str) -> dict[str, str]:
        """'default': GDAL_CACHEMAX unset in the child (bench_common would otherwise pass on the
        caller's); else that many MB."""
        if cache not in self.envs:
            folder = self.runs / f"cache-{cache}"
            folder.mkdir()
            self.envs[cache] = child_env(folder, None if cache == "default" else int(cache))
        return self.envs[cache]

    def raster(self, size: int) -> Path:
        path = self.rasters / f"giant_{PATTERN}_{size}.tif"
        if path.exists():  # kept by an earlier run: it stays
            print(f"  {size} x {size}: reusing {path} ({path.stat().st_size / 2**30:.2f} GiB)", flush=True)
            return path
        options = ["--raster", str(path), "--size", str(size)]
        written = run_helper(SCRIPT, "raster", options, self.runs, self.env(str(CACHE_MB)))
        print(
            f"  {size} x {size}: raster written in {written['seconds']:.0f} s "
            f"({path.stat().st_size / 2**30:.2f} GiB on disk, {3 * size**2 / 2**30:.2f} GiB raw)",
            flush=True,
        )
        self.written.append(path)
        return path

    def options(self, raster: Path, output: Path) -> list[str]:
        args = self.args
        options = ["--raster", str(raster), "--model", str(args.model), "--output", str(output)]
        for name in ("tile", "overlap", "batch", "threads"):
            options += [f"--{name}", str(getattr(args, name))]
        return options

    def run(self, size: int, mode: str, cache: str, raster: Path, count_classes: bool = False) -> Row:
        output = self.runs / "classes.tif"
        label = f"{mode} ({'GDAL cache default' if cache == 'default' else f'GDAL_CACHEMAX={cache}'})"
        print(f"  {size} x {size}: {label} ...", flush=True)
        env = self.env(cache)
        try:
            measured = measure(SCRIPT, mode, self.options(raster, output), self.runs, env, self.args)
            if count_classes:
                options = ["--raster", str(output)]
                measured.result["classes"] = run_helper(SCRIPT, "classes", options, self.runs, env)["counts"]
        finally:
            output.unlink(missing_ok=True)
        print(
            f"  {size} x {size}: {label}: {measured.seconds:.1f} s, peak {measured.peak_mib:.0f} MiB, "
            f"others {measured.other_cpu:.0%}",
            flush=True,
        )
        return Row(size, label, measured)


def print_report(rows: list[Row], args: argparse.Namespace) -> None:
    threads = args.threads or "onnxruntime's default"
    print()
    print(
        f"segment: {MODEL.relative_to(REPO)}, tiles {args.tile} px, overlap {args.overlap} px "
        f"({overlap_percent(args.tile, args.overlap):g} %), batch {args.batch}, pyramid blending; "
        f"model threads: {threads}; {os.cpu_count()} CPUs"
    )
    print(
        f"{'size':>6} {'mode':<34} {'tiles':>6} {'wall s':>9} {'child s':>8} {'peak RSS MiB':>12}"
        f" {'before':>7} {'cache MiB':>10} {'others':>7} {'rsdl/ort':>9}"
    )
    for row in rows:
        m = row.measured
        before = m.result.get("before_mib")
        cache = m.result.get("cache_max_mib")
        cache = "" if cache is None else f"{m.result['cache_peak_mib']:.0f}/{cache:.0f}"
        print(
            f"{row.size:>6} {row.mode:<34} {m.result['tiles']:>6} {m.seconds:>9.1f} {m.wall:>8.0f}"
            f" {m.peak_mib:>12.0f} {'' if before is None else f'{before:.0f}':>7}"
            f" {cache:>10}"
            f" {m.other_cpu:>7.0%} {'' if row.ratio is None else f'{row.ratio:.2f}':>9}"
        )
    print(
        "wall s: rsdl: processing.run('rsdl:segment') (model load, read, normalise, infer, blend, "
        "write);\n  ort: session.run alone over the same tiles and batches (reading and cutting "
        "untimed). child s: the whole child\n  process. peak RSS: the child's (os.wait4). before: "
        "the rsdl child's RSS before processing.run (QGIS started).\n  cache MiB: GDAL's block cache "
        "in the rsdl child, its peak use (sampled every 0.1 s) / its maximum. others: CPU share\n  other "
        "processes used meanwhile (noise). rsdl/ort: the engine's time over the model's alone."
    )
    for row in rows:
        classes = row.measured.result.get("classes")
        if classes:
            total = sum(classes.values())
            shares = ", ".join(f"{value}: {n / total:.1%}" for value, n in classes.items())
            print(f"classes of the {row.size} px output (value: share of pixels): {shares}")
    pair = [row for row in rows if row.size == args.cache_size and row.mode.startswith("rsdl")]
    if len(pair) == 2:
        default, capped = (row.measured.peak_mib for row in pair)
        print(
            f"GDAL cache default vs GDAL_CACHEMAX={CACHE_MB} at {args.cache_size} px: {default:.0f} vs "
            f"{capped:.0f} MiB peak ({default - capped:+.0f} MiB, {default / capped:.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=40000, help="side of the giant raster in pixels")
    parser.add_argument(
        "--cache-size",
        type=int,
        default=16384,
        help="side of the raster of the GDAL cache pair (default cache vs 128 MB; 0: skip it)",
    )
    parser.add_argument("--threads", type=int, default=0, help="model CPU threads (0: onnxruntime's default)")
    parser.add_argument(
        "--work-dir", type=Path, help="folder for the rasters (default: a temporary folder, removed)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the rasters this run writes in --work-dir (one already there is reused and kept)",
    )
    parser.add_argument("--skip-giant", action="store_true", help="only the GDAL cache pair")
    add_quiet_options(parser)
    parser.set_defaults(retries=0)  # a giant run takes tens of minutes: report its noise, do not rerun
    # Internal: the children.
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--raster", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=str(MODEL), help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    for name in ("tile", "overlap", "batch"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(CHILDREN, args)
        return
    if args.keep and not args.work_dir:
        parser.error("--keep needs --work-dir (a temporary folder is always removed)")

    started = time.perf_counter()
    rasters = args.work_dir or Path(tempfile.mkdtemp(prefix="rsdl-bench-giant-"))
    rasters.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=rasters))
    bench = Bench(args, rasters, runs)
    rows: list[Row] = []
    try:
        defaults = run_helper(SCRIPT, "defaults", ["--model", args.model], runs, bench.env(str(CACHE_MB)))
        args.tile, args.overlap, args.batch = defaults["tile"], defaults["overlap"], defaults["batch"]
        print(
            f"bench_giant: size {args.size}{' (skipped)' if args.skip_giant else ''}, cache pair at "
            f"{args.cache_size or 'none'}; rasters in {rasters}; tiles {args.tile} px, overlap "
            f"{args.overlap} px, batch {args.batch} (the model's defaults)",
            flush=True,
        )
        if args.cache_size:
            raster = bench.raster(args.cache_size)
            for cache in ("default", str(CACHE_MB)):
                rows.append(bench.run(args.cache_size, "rsdl", cache, raster))
        if not args.skip_giant:
            raster = bench.raster(args.size)
            rsdl = bench.run(args.size, "rsdl", "default", raster, count_classes=True)
            ort = bench.run(args.size, "ort", str(CACHE_MB), raster)
            if rsdl.measured.result["tiles"] != ort.measured.result["tiles"]:
                raise RuntimeError(
                    f"rsdl ran {rsdl.measured.result['tiles']} tiles, ort {ort.measured.result['tiles']}"
                )
            rsdl.ratio = rsdl.measured.seconds / ort.measured.seconds
            rows += [rsdl, ort]
    finally:
        shutil.rmtree(runs, ignore_errors=True)
        if not args.keep:
            for path in bench.written:  # with the statistics QGIS writes beside a raster it opens
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)
            if not args.work_dir:
                shutil.rmtree(rasters, ignore_errors=True)
    print_report(rows, args)
    waited = sum(row.measured.waited for row in rows)
    print(
        f"\ntotal runtime {time.perf_counter() - started:.0f} s, of which {waited:.0f} s waiting for "
        "other processes to go quiet"
    )


if __name__ == "__main__":
    main()
