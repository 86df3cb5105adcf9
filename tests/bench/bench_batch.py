"""Benchmark: ``python -m training predict`` in one process against a local Dask cluster.

Each measurement runs in its own child process (bench_common: peak RSS by os.wait4, waiting for
a quiet machine):

* throughput: ``--rasters`` rasters of ``--size``² px (3-band uint8, 0.5 m) through the demo
  U-Net (models/sample_scene_landcover, 256 px tiles), in one process with all the cores'
  threads, then on a local Dask cluster of ``--workers`` worker processes sharing the cores
  (batch_runner's run_in_process and run_on_dask, the code the command runs). Rasters per minute
  and their ratio; the cluster's start-up is timed apart.
* per-task overhead: ``--tiny`` rasters of one 64 px tile through a tiny net, in one process
  and on a cluster of one worker: (cluster - one process) / rasters is what Dask adds per task
  (submit, schedule, run on the worker, send the result back), in milliseconds.
* memory against height: ``python -m training predict`` (the command itself) on rasters as wide
  as ``--memory-width`` and of each height in ``--memory-heights``; the peak must not grow with
  the height, since the engine streams a band of rows.

    python tests/bench/bench_batch.py [--rasters 24] [--size 1024] [--workers 2] [--tiny 100]
        [--memory-width 8000] [--memory-heights 2000,16000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import REPO, add_quiet_options, child_env, child_main, measure

SCRIPT = Path(__file__).resolve()
UNET = REPO / "models/sample_scene_landcover/model.onnx"
PIXEL = 0.5  # m: the U-Net's resolution, so nothing warns


def write_raster(path: Path, height: int, width: int, seed: int) -> Path:
    """Smooth colour fields, written in strips (never the whole image in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "count": 3,
        "height": height,
        "width": width,
        "dtype": "uint8",
        "crs": "EPSG:32636",
        "transform": from_origin(455000.0, 36000.0, PIXEL, PIXEL),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    cols = np.arange(width)
    with rasterio.open(path, "w", **profile) as out:
        for top in range(0, height, 256):
            rows = np.arange(top, min(top + 256, height))[:, None]
            bands = [128 + 110 * np.sin(rows / (40 + 9 * b + seed) + cols / (55 - 7 * b)) for b in range(3)]
            out.write(np.stack(bands).astype(np.uint8), window=Window(0, top, width, len(rows)))
    return path


# -- children -----------------------------------------------------------------------------------


def _tasks(folder: Path, output: Path) -> list:
    from training.batch_runner import RasterTask

    return [RasterTask(path, output) for path in sorted(folder.glob("*.tif"))]


def _run(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    from training.batch_runner import ModelRef, dask_client, run_in_process, run_on_dask
    from training.manifest import file_sha256
    from training.raster_prediction import PredictOptions

    options = PredictOptions(tile_size=args.tile, overlap_percent=args.overlap)
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    ref = ModelRef(args.model, file_sha256(args.model), "cpu", threads)
    output = Path(tempfile.mkdtemp(dir=args.work))
    tasks = _tasks(Path(args.input), output)
    if workers == 0:
        start = time.perf_counter()
        outcomes = list(run_in_process(ref, tasks, options))
        return _result(outcomes, time.perf_counter() - start, 0.0)
    begun = time.perf_counter()
    with dask_client(None, workers, ["cpu"]) as client:
        client.wait_for_workers(workers)
        ready = time.perf_counter()
        outcomes = list(run_on_dask(client, ref, tasks, options))
        return _result(outcomes, time.perf_counter() - ready, ready - begun)


def _result(outcomes: list, seconds: float, start_up: float) -> dict[str, Any]:
    from training.batch_runner import TaskFailure

    failed = [outcome.message for _task, outcome in outcomes if isinstance(outcome, TaskFailure)]
    if failed:
        raise RuntimeError(f"{len(failed)} raster(s) failed: {failed[0]}")
    return {"seconds": seconds, "rasters": len(outcomes), "start_up": start_up}


def child_in_process(args: argparse.Namespace) -> dict[str, Any]:
    return _run(args, 0)


def child_dask(args: argparse.Namespace) -> dict[str, Any]:
    return _run(args, args.workers)


def child_predict(args: argparse.Namespace) -> dict[str, Any]:
    from training.predict import main

    start = time.perf_counter()
    output = tempfile.mkdtemp(dir=args.work)
    code = main([args.input, "--model", args.model, "--output-dir", output, "--tile-size", str(args.tile)])
    if code != 0:
        raise RuntimeError(f"predict exited {code}")
    return {"seconds": time.perf_counter() - start}


CHILDREN = {"in_process": child_in_process, "dask": child_dask, "predict": child_predict}


# -- the bench ----------------------------------------------------------------------------------


def _options(model: Path, rasters: Path, work: Path, tile: int, overlap: float, workers: int) -> list[str]:
    return [
        "--model",
        str(model),
        "--input",
        str(rasters),
        "--work",
        str(work),
        "--tile",
        str(tile),
        "--overlap",
        str(overlap),
        "--workers",
        str(workers),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rasters", type=int, default=24)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiny", type=int, default=100)
    parser.add_argument("--memory-width", type=int, default=8000)
    parser.add_argument("--memory-heights", default="2000,16000")
    add_quiet_options(parser)
    for name in ("--child", "--result", "--model", "--work", "--input"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--overlap", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(CHILDREN, args)
        return

    sys.path.insert(0, str(REPO))
    from scripts.make_test_models import write_test_models

    with tempfile.TemporaryDirectory(prefix="rsdl-bench-batch-") as folder:
        work = Path(folder)
        env = child_env(work, None)
        tiny_model = write_test_models(work / "models")["fcn_seg.onnx"]

        print(f"== throughput: {args.rasters} rasters of {args.size}² px, demo U-Net, 256 px tiles")
        (work / "many").mkdir()
        for index in range(args.rasters):
            write_raster(work / "many" / f"r{index:03d}.tif", args.size, args.size, index)
        common = _options(UNET, work / "many", work, 256, 12.5, args.workers)
        one = measure(SCRIPT, "in_process", common, work, env, args)
        cluster = measure(SCRIPT, "dask", common, work, env, args)
        per_minute = [args.rasters / m.seconds * 60 for m in (one, cluster)]
        for label, run, rate in (
            (f"1 process, {os.cpu_count()} threads", one, per_minute[0]),
            (f"Dask, {args.workers} worker processes", cluster, per_minute[1]),
        ):
            print(f"  {label:<28} {run.seconds:6.1f} s {rate:6.1f} rasters/min  (others {run.other_cpu:.0%})")
        print(f"  (the cluster's start-up, {cluster.result['start_up']:.1f} s, is not counted)")
        print(f"  ratio Dask / 1 process (rasters per minute): {per_minute[1] / per_minute[0]:.2f}")

        print(f"== per-task overhead: {args.tiny} rasters of one 64 px tile, tiny net")
        (work / "tiny").mkdir()
        for index in range(args.tiny):
            write_raster(work / "tiny" / f"t{index:03d}.tif", 64, 64, index)
        tiny = _options(tiny_model, work / "tiny", work, 64, 0, 1)
        one = measure(SCRIPT, "in_process", tiny, work, env, args)
        cluster = measure(SCRIPT, "dask", tiny, work, env, args)
        overhead = (cluster.seconds - one.seconds) / args.tiny * 1000
        print(
            f"  1 process {one.seconds / args.tiny * 1000:.1f} ms per raster, Dask (1 worker) "
            f"{cluster.seconds / args.tiny * 1000:.1f} ms: Dask adds {overhead:.1f} ms per task "
            f"(others {one.other_cpu:.0%} / {cluster.other_cpu:.0%})"
        )

        print(f"== python -m training predict, memory against height (width {args.memory_width}, tiny net)")
        for height in (int(h) for h in args.memory_heights.split(",")):
            raster = write_raster(work / f"tall_{height}.tif", height, args.memory_width, 0)
            options = _options(tiny_model, raster, work, 256, 0, 1)
            run = measure(SCRIPT, "predict", options, work, env, args)
            # The child's own high-water mark: ru_maxrss may carry the parent's over exec.
            peak = run.result["hwm_mib"]
            print(f"  {args.memory_width} x {height}: {run.seconds:6.1f} s, peak RSS {peak:6.0f} MiB")
            raster.unlink()


if __name__ == "__main__":
    main()
