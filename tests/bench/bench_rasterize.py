"""Benchmark: rsdl:rasterizelabels against gdal_rasterize on the same large grid, side by side.

Generates many building-like polygons over a SIZE x SIZE grid (1 m pixels), then runs, in one
session and in alternating order, ``gdal_rasterize`` and ``qgis_process run rsdl:rasterizelabels``
with the same output options (class from a field, tiled DEFLATE GeoTIFF). Prints wall time and
peak RSS of each, their ratios, and qgis_process's start-up cost so the ratio can be read both
ways. Peak RSS far below SIZE^2 bytes shows the mask is written in blocks.

    python tests/bench/bench_rasterize.py [--size 20000] [--polygons 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import ogr, osr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.build_plugin import stage  # noqa: E402
from scripts.qgis_process_runner import QgisProcess  # noqa: E402

EPSG = 32636
ORIGIN = (400000.0, 100000.0)


def make_polygons(path: Path, size: int, count: int, seed: int = 0) -> None:
    """Rotated rectangles 4-40 m wide with a class field 1..5, spread over the grid."""
    rng = np.random.default_rng(seed)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = datasource.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    definition = layer.GetLayerDefn()
    layer.StartTransaction()
    centres = rng.uniform(0, size, (count, 2))
    sizes = rng.uniform(4, 40, (count, 2))
    angles = rng.uniform(0, math.pi, count)
    classes = rng.integers(1, 6, count)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    for (cx, cy), (w, h), angle, value in zip(centres, sizes, angles, classes):
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = (corners * (w, h)) @ rotation.T + (ORIGIN[0] + cx, ORIGIN[1] - cy)
        ring = ", ".join(f"{x} {y}" for x, y in points)
        feature = ogr.Feature(definition)
        feature.SetField("class_id", int(value))
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({ring}))"))
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    datasource = None


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    out, err = process.stdout.read(), process.stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{out.decode()[-2000:]}\n{err.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000, help="grid width and height in pixels")
    parser.add_argument("--polygons", type=int, default=100000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rsdl-bench-") as work_dir:
        work = Path(work_dir)
        labels = work / "labels.gpkg"
        make_polygons(labels, args.size, args.polygons)
        xmin, ymax = ORIGIN
        xmax, ymin = xmin + args.size, ymax - args.size
        qgis = QgisProcess(stage(work / "plugins").parent, work / "home")
        qgis.enable_plugin()

        gdal_command = [
            "gdal_rasterize", "-q", "-a", "class_id", "-te", str(xmin), str(ymin), str(xmax), str(ymax),
            "-tr", "1", "1", "-ot", "Byte", "-a_nodata", "255", "-init", "0",
            "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", str(labels), str(work / "gdal.tif"),
        ]  # fmt: skip
        rsdl_command = [
            qgis.executable, "run", "rsdl:rasterizelabels", "--",
            f"INPUT={labels}", "FIELD=class_id", f"EXTENT={xmin},{xmax},{ymin},{ymax} [EPSG:{EPSG}]",
            "PIXEL_SIZE=1", f"OUTPUT={work / 'rsdl.tif'}",
        ]  # fmt: skip
        startup_command = [qgis.executable, "help", "rsdl:rasterizelabels"]

        timings: dict[str, list[tuple[float, float]]] = {"gdal_rasterize": [], "rsdl": [], "startup": []}
        for _ in range(args.repeats):
            timings["gdal_rasterize"].append(run_measured(gdal_command))
            timings["rsdl"].append(run_measured(rsdl_command, qgis.env))
            timings["startup"].append(run_measured(startup_command, qgis.env))
            for path in work.glob("*.tif*"):
                path.unlink()

    best = {name: min(values) for name, values in timings.items()}
    peak = {name: max(rss for _, rss in values) for name, values in timings.items()}
    grid_mib = args.size * args.size / 2**20
    print(f"grid {args.size} x {args.size} (uint8 full array: {grid_mib:,.0f} MiB), {args.polygons:,} polygons, best of {args.repeats}")
    print(f"{'':24}{'wall s':>10}{'peak RSS MiB':>15}")
    for name in ("gdal_rasterize", "rsdl", "startup"):
        label = {"rsdl": "rsdl (qgis_process)", "startup": "qgis_process start-up"}.get(name, name)
        print(f"{label:24}{best[name][0]:>10.2f}{peak[name]:>15.0f}")
    ratio = best["rsdl"][0] / best["gdal_rasterize"][0]
    ratio_net = (best["rsdl"][0] - best["startup"][0]) / best["gdal_rasterize"][0]
    print(f"time ratio rsdl / gdal_rasterize: {ratio:.2f} (without qgis_process start-up: {ratio_net:.2f})")
    print(f"peak RSS ratio rsdl / gdal_rasterize: {peak['rsdl'] / peak['gdal_rasterize']:.2f}; "
          f"rsdl peak is {peak['rsdl'] / grid_mib:.2f} x the full grid array")  # fmt: skip


if __name__ == "__main__":
    main()
