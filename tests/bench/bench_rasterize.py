"""Benchmark: rsdl:rasterizelabels against gdal_rasterize on the same large grid, side by side.

For each grid size it generates building-like polygons at a fixed density (1 m pixels), then
runs, in one session and in alternating order, ``gdal_rasterize`` and
``qgis_process run rsdl:rasterizelabels`` with the same output options (class from a field,
tiled DEFLATE GeoTIFF). Prints wall time and peak RSS of each, their ratios, and
qgis_process's start-up cost so the ratio can be read both ways. Peak RSS that stays flat as
the grid grows shows the mask is written in blocks.

    python tests/bench/bench_rasterize.py [--sizes 5000,10000,20000] [--density 250] [--repeats 2]
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
GDAL_CACHE_MB = 256  # the same block cache for both tools, so peak memory compares fairly
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


def bench_size(size: int, density: float, repeats: int, work: Path, qgis: QgisProcess) -> dict:
    """Best wall time and peak RSS of each command on one grid size."""
    labels = work / f"labels_{size}.gpkg"
    polygons = int(density * (size / 1000) ** 2)
    make_polygons(labels, size, polygons)
    xmin, ymax = ORIGIN
    xmax, ymin = xmin + size, ymax - size
    env = {**qgis.env, "GDAL_CACHEMAX": str(GDAL_CACHE_MB)}
    commands = {
        "gdal_rasterize": [
            "gdal_rasterize",
            "-q",
            "-a",
            "class_id",
            "-te",
            str(xmin),
            str(ymin),
            str(xmax),
            str(ymax),
            "-tr",
            "1",
            "1",
            "-ot",
            "Byte",
            "-a_nodata",
            "255",
            "-init",
            "0",
            "-co",
            "TILED=YES",
            "-co",
            "COMPRESS=DEFLATE",
            str(labels),
            str(work / "gdal.tif"),
        ],
        "rsdl": [
            qgis.executable,
            "run",
            "rsdl:rasterizelabels",
            "--",
            f"INPUT={labels}",
            "FIELD=class_id",
            f"EXTENT={xmin},{xmax},{ymin},{ymax} [EPSG:{EPSG}]",
            "PIXEL_SIZE=1",
            f"OUTPUT={work / 'rsdl.tif'}",
        ],
        "startup": [qgis.executable, "help", "rsdl:rasterizelabels"],
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):  # alternate the tools so drift hits both alike
        for name, command in commands.items():
            runs[name].append(run_measured(command, env))
        for path in work.glob("*.tif*"):
            path.unlink()
    labels.unlink()
    return {
        "size": size,
        "polygons": polygons,
        **{name: (min(t for t, _ in values), max(r for _, r in values)) for name, values in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="5000,10000,20000", help="grid sizes (pixels a side), comma separated"
    )
    parser.add_argument("--density", type=float, default=250.0, help="polygons per 1000 x 1000 pixels")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rsdl-bench-") as work_dir:
        work = Path(work_dir)
        qgis = QgisProcess(stage(work / "plugins").parent, work / "home")
        qgis.enable_plugin()
        results = [
            bench_size(int(size), args.density, args.repeats, work, qgis) for size in args.sizes.split(",")
        ]

    print(f"rasterize: best of {args.repeats}, GDAL_CACHEMAX={GDAL_CACHE_MB} MB for both tools")
    print(
        f"{'grid':>13} {'polygons':>9} {'gdal s':>8} {'rsdl s':>8} {'ratio':>6} {'net':>6}"
        f" {'gdal MiB':>9} {'rsdl MiB':>9} {'grid MiB':>9}"
    )
    for r in results:
        gdal_s, gdal_mib = r["gdal_rasterize"]
        rsdl_s, rsdl_mib = r["rsdl"]
        startup_s = r["startup"][0]
        print(
            f"{r['size']:>6} x {r['size']:<6}{r['polygons']:>9,} {gdal_s:>8.2f} {rsdl_s:>8.2f}"
            f" {rsdl_s / gdal_s:>6.2f} {(rsdl_s - startup_s) / gdal_s:>6.2f}"
            f" {gdal_mib:>9.0f} {rsdl_mib:>9.0f} {r['size'] ** 2 / 2**20:>9.0f}"
        )
    print(
        "ratio: rsdl (qgis_process run) / gdal_rasterize; net: without qgis_process start-up "
        f"({results[-1]['startup'][0]:.2f} s). grid MiB: one full uint8 array of the grid."
    )


if __name__ == "__main__":
    main()
