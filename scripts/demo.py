"""The rsdl demo: a model from models/ run end to end through the plugin's algorithms (qgis_process).

1. scripts/make_sample_scene.py writes an RGB GeoTIFF (UTM, 0.5 m) and vector labels (EPSG:4326):
   buildings, water, vegetation polygons (one of them invalid) and roads as lines. Skipped with
   --data (your own raster).
2. rsdl:segment runs the model (default: models/sample_scene_landcover, which never saw this
   scene) into a styled class raster, a confidence raster and class polygons.
3. rsdl:rasterizelabels burns the labels into a class mask on the class raster's grid (text
   classes, roads buffered by their width in metres, the invalid polygon repaired), with class
   statistics and a chart.
4. rsdl:evaluate scores the class raster against the vector labels, which it burns onto the same
   grid by the same rules: HTML report, CSV, heatmap. (Not against mask.tif: a mask does not
   record that a class is named after its layer, e.g. 'buildings_all' from buildings_all.geojson,
   which evaluate then matches to a model's only foreground class.)
5. scripts/render_map.py draws a PNG map with QGIS's renderer: the image under the
   semi-transparent classes and the polygons' outlines, with a legend of per-class IoU.
Steps 3 and 4 need labels: the sample scene's, or yours with --labels; without, they are skipped.

    python scripts/demo.py [OUTPUT_FOLDER] [--size 1024]           (make demo)
    python scripts/demo.py OUT --data my.tif --model my.onnx [--labels my.gpkg --field class]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.build_plugin import stage  # noqa: E402
from scripts.qgis_process_runner import QgisProcess  # noqa: E402

DEFAULT_MODEL = REPO / "models" / "sample_scene_landcover" / "model.onnx"
# The sample labels' class field; roads are lines, burnt at their own width (width_m) in metres,
# as the model's training data was.
SAMPLE_LABEL_PARAMETERS = {
    "FIELD": "class_name",
    "BUFFER_WIDTH": 6,
    "BUFFER_UNITS": 1,
    "BUFFER_FIELD": "width_m",
}
UNLABELLED_IGNORE = 1  # rsdl:rasterizelabels' UNLABELLED option "ignore"
# Files this demo writes in its output folder (sidecars included), removed before a new run so
# that nothing stale from an earlier run (e.g. with labels) is listed as this run's output.
OUTPUT_FILES = (
    "classes.tif",
    "classes.qml",
    "classes.tif.aux.xml",
    "confidence.tif",
    "confidence.tif.aux.xml",
    "classes.gpkg",
    "mask.tif",
    "mask.qml",
    "mask.tif.aux.xml",
    "label_statistics.json",
    "label_classes.png",
    "evaluation.html",
    "evaluation.csv",
    "confusion.png",
    "map.png",
)


@dataclass
class DemoInputs:
    """What the demo runs on: a raster, a model and, optionally, reference labels."""

    raster: Path
    model: Path
    labels: list[str]  # vector sources (``file.gpkg|layername=x``); empty: no evaluation
    label_parameters: dict[str, object]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (make demo passes DATA, MODEL, LABELS, LABEL_FIELD, LABEL_NAME_FIELD and
    SPARSE_LABELS through)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", type=Path, nargs="?", default=REPO / "demo_output")
    parser.add_argument("--size", type=int, default=1024, help="sample scene size in pixels")
    parser.add_argument("--data", type=Path, help="your raster, instead of the sample scene")
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="ONNX or TorchScript segmentation model"
    )
    parser.add_argument(
        "--labels",
        action="append",
        default=[],
        help="reference vector labels for --data (repeat for several layers; 'file.gpkg|layername=x')",
    )
    parser.add_argument("--field", help="class field of --labels (default: each labels layer is one class)")
    parser.add_argument(
        "--name-field",
        help="field of --labels holding class names; name them as the model does so that "
        "rsdl:evaluate matches classes by name (default: matched by value)",
    )
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="the labels are samples: pixels outside them are unknown (left out of the "
        "evaluation), not background",
    )
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"--model: '{args.model}' is not a file")
    if args.data is not None and not args.data.is_file():
        parser.error(f"--data: '{args.data}' is not a file")
    return args


def sample_scene(folder: Path, size: int) -> tuple[Path, list[str]]:
    """Generate the sample scene; returns its raster and label sources."""
    subprocess.run(
        [sys.executable, str(REPO / "scripts/make_sample_scene.py"), str(folder), "--size", str(size)],
        check=True,
    )
    labels = folder / "labels.gpkg"
    return folder / "scene.tif", [f"{labels}|layername=landcover", f"{labels}|layername=roads"]


def demo_inputs(args: argparse.Namespace, out: Path) -> DemoInputs:
    """The user's raster/labels, or the generated sample scene and its labels."""
    model = args.model.resolve()
    own_labels: dict[str, object] = {"FIELD": args.field} if args.field else {}  # no field: a class per layer
    if args.name_field:
        own_labels["NAME_FIELD"] = args.name_field
    if args.sparse:
        own_labels["UNLABELLED"] = UNLABELLED_IGNORE
    if args.data is not None:
        return DemoInputs(args.data.resolve(), model, args.labels, own_labels)
    step("Generating the sample scene")
    raster, labels = sample_scene(out / "scene", args.size)
    if args.labels:
        return DemoInputs(raster, model, args.labels, own_labels)
    return DemoInputs(raster, model, labels, SAMPLE_LABEL_PARAMETERS)


def print_log(result: dict) -> None:
    log = result.get("log")
    if isinstance(log, dict):
        for line in log.get("info", []):
            print("  " + line)
        for line in log.get("warning", []):
            print("  warning: " + line)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    started = time.perf_counter()
    inputs = demo_inputs(args, out)
    outputs: dict[str, Path | str] = {"image": inputs.raster, "model": inputs.model}
    if inputs.labels:
        outputs["reference labels"] = ", ".join(inputs.labels)
    qgis = QgisProcess(stage(out / ".plugin").parent, out / ".qgis-home")

    step(f"qgis_process run rsdl:segment ({inputs.model.parent.name}/{inputs.model.name})")
    classes, polygons = out / "classes.tif", out / "classes.gpkg"
    segmented = qgis.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(inputs.raster),
            "MODEL": str(inputs.model),
            "OUTPUT": str(classes),
            "CONFIDENCE": str(out / "confidence.tif"),
            "OUTPUT_POLYGONS": str(polygons),
        },
    )
    print_log(segmented)
    outputs |= {
        "class raster (opens styled in QGIS)": classes,
        "confidence raster": out / "confidence.tif",
        "class polygons": polygons,
    }

    csv_path = None
    title = f"{inputs.model.parent.name} on {inputs.raster.name}"
    if inputs.labels:
        step("qgis_process run rsdl:rasterizelabels (onto the class raster's grid)")
        # The class raster's grid, not the image's (a model may run at another resolution): the
        # grid rsdl:evaluate burns the labels onto, so the mask shows what is scored.
        rasterized = qgis.run_algorithm(
            "rsdl:rasterizelabels",
            {
                "INPUT": inputs.labels,
                **inputs.label_parameters,
                "REFERENCE": str(classes),
                "OUTPUT": str(out / "mask.tif"),
                "STATISTICS": str(out / "label_statistics.json"),
                "CHART": str(out / "label_classes.png"),
            },
        )
        print_log(rasterized)

        step("qgis_process run rsdl:evaluate (against the labels, burnt onto the same grid)")
        # The vector labels, not mask.tif: a mask does not record that a class was named after
        # its layer, which rsdl:evaluate needs to match e.g. 'buildings_all' to 'buildings'.
        csv_path = out / "evaluation.csv"
        evaluated = qgis.run_algorithm(
            "rsdl:evaluate",
            {
                "PREDICTION": str(classes),
                "LABELS": inputs.labels,
                **inputs.label_parameters,
                "OUTPUT_HTML": str(out / "evaluation.html"),
                "OUTPUT_CSV": str(csv_path),
                "CONFUSION_PNG": str(out / "confusion.png"),
            },
        )
        metrics = json.loads(evaluated["results"]["METRICS"])
        print_log(evaluated)
        title += f": mean IoU {metrics['mean_iou']:.3f}"
        outputs |= {
            "label mask (opens styled in QGIS)": out / "mask.tif",
            "label class statistics": out / "label_statistics.json",
            "label class chart": out / "label_classes.png",
            "evaluation report": out / "evaluation.html",
            "per-class metrics": csv_path,
            "confusion matrix": out / "confusion.png",
        }
    else:
        print("\nNo reference labels (give LABELS=... / --labels): skipping rasterize and evaluate.")

    step("Rendering the map with QGIS (scripts/render_map.py)")
    render = [sys.executable, str(REPO / "scripts/render_map.py"), str(inputs.raster), str(classes)]
    render += [str(out / "map.png"), "--polygons", str(polygons), "--title", title]
    if csv_path is not None:
        render += ["--metrics", str(csv_path)]
    subprocess.run(render, check=True, env=qgis.env)  # qgis_process's isolated HOME and offscreen Qt
    outputs["map"] = out / "map.png"

    step(f"Done in {time.perf_counter() - started:.0f} s. Outputs:")
    for name, path in outputs.items():
        print(f"  {name:36} {path}")


if __name__ == "__main__":
    main()
