"""The rsdl demo: a generated sample scene through the plugin's algorithms, via qgis_process.

1. scripts/make_sample_scene.py writes an RGB GeoTIFF (UTM) and vector labels (EPSG:4326):
   buildings, water, vegetation polygons (one of them invalid) and roads as lines.
2. rsdl:rasterizelabels burns them into a class mask on the image's grid (text classes, roads
   buffered by their width in metres, the invalid polygon repaired), with statistics and a chart.
3. rsdl:exportchips cuts training chips with a spatial train/validation split and an index.

    python scripts/demo.py [OUTPUT_FOLDER]      (make demo)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.build_plugin import stage  # noqa: E402
from scripts.qgis_process_runner import QgisProcess  # noqa: E402


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", type=Path, nargs="?", default=REPO / "demo_output")
    parser.add_argument("--size", type=int, default=1024, help="sample scene size in pixels")
    args = parser.parse_args()
    out = args.output.resolve()
    for stale in (
        "mask.tif",
        "mask.tif.aux.xml",
        "mask.qml",
        "chips",
        "class_statistics.json",
        "classes.png",
    ):
        path = out / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    step("1/3 Generating the sample scene")
    scene = out / "scene"
    subprocess.run(
        [sys.executable, str(REPO / "scripts/make_sample_scene.py"), str(scene), "--size", str(args.size)],
        check=True,
    )

    qgis = QgisProcess(stage(out / ".plugin").parent, out / ".qgis-home")
    step("2/3 qgis_process run rsdl:rasterizelabels")
    labels = scene / "labels.gpkg"
    rasterized = qgis.run_algorithm(
        "rsdl:rasterizelabels",
        {
            "INPUT": [f"{labels}|layername=landcover", f"{labels}|layername=roads"],
            "FIELD": "class_name",
            "REFERENCE": str(scene / "scene.tif"),
            "BUFFER_WIDTH": 6,
            "BUFFER_UNITS": 1,
            "BUFFER_FIELD": "width_m",
            "OUTPUT": str(out / "mask.tif"),
            "STATISTICS": str(out / "class_statistics.json"),
            "CHART": str(out / "classes.png"),
        },
    )
    for line in rasterized["log"].get("info", []):
        print("  " + line)
    for line in rasterized["log"].get("warning", []) if isinstance(rasterized["log"], dict) else []:
        print("  warning: " + line)

    step("3/3 qgis_process run rsdl:exportchips")
    chips = qgis.run_algorithm(
        "rsdl:exportchips",
        {
            "INPUT": str(scene / "scene.tif"),
            "MASK": str(out / "mask.tif"),
            "CHIP_SIZE": 128,
            "STRIDE": 128,
            "MODE": 2,
            "VAL_FRACTION": 0.25,
            "SPLIT_BLOCK": 256,
            "MIN_COVER": 0.1,
            "OUTPUT": str(out / "chips"),
        },
    )
    counts = json.loads(chips["results"]["CHIP_COUNTS"])
    print(f"  chips per split: {counts}")

    step(f"Done in {time.perf_counter() - started:.0f} s. Outputs:")
    outputs = {
        "sample image": scene / "scene.tif",
        "sample labels": labels,
        "label mask (opens styled in QGIS)": out / "mask.tif",
        "class statistics": out / "class_statistics.json",
        "class chart": out / "classes.png",
        "training chips": out / "chips",
        "chip index": Path(chips["results"]["INDEX"]),
    }
    for name, path in outputs.items():
        print(f"  {name:36} {path}")


if __name__ == "__main__":
    main()
