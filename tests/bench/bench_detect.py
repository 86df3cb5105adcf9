"""Benchmark: rsdl:detect against a bare onnxruntime loop over the same tiles, its peak memory as
the raster grows, and the seam merger alone.

The detector is a small YOLO-like net, built here with torch and exported to ONNX once per run
(into the work folder): five strided 3x3 conv blocks (BatchNorm + SiLU) down to stride 8, 16 and
32, each level with a box branch (two 3x3 convs, then 4 x 16 distance bins read as YOLOv8's DFL:
softmax, expectation) and a class branch (two 3x3 convs, sigmoid), decoded to YOLOv8's output
layout ``[B, 4 + nc, N]`` (cx, cy, w, h in tile pixels, nc = 3 class scores; N = 8400 at 640 px).
About 5.9 GFLOPs per 640 px tile (YOLOv8n: 8.7); a static 640 x 640 input and a dynamic batch,
as Ultralytics exports it. Its weights are random, so that real objects come out of it, the stride-8
level adds the exact geometric detector of ``tests/detector_models.py`` (``_YoloV8``: every anchor
inside a painted object gives that object's box, scoring up to 1 at its centre, 0 off objects):
P3 boxes = that box grown by 0.01 x the net's own distances (at most ~1 px), P3 scores = its score
x (0.8 + 0.2 x the net's sigmoid); the stride-16 and -32 levels output the net's boxes with scores
0.2 x sigmoid, under the 0.25 confidence threshold. Every layer is computed; ~8 anchors per object
pass the threshold, so decoding and the non-maximum suppressions do real work.

The raster: 3-band uint8, tiled 256 x 256, DEFLATE + predictor 2, written in strips (generation
never holds the image). Band 1 is 0 except inside objects (255): the geometric detector counts
band 1's object pixels along rows and columns. Objects are rectangles 16-40 px a side, one in 80%
of the cells of a 160 px grid (so at least 96 px apart along rows and columns, as that detector
needs), jittered in their cell; band 2 holds their class, band 3 a flat value; outside objects
bands 2 and 3 carry gradients and noise. About 500 objects at 4000 px, 8,000 at 16000 px; tiles
cut many of them (640 px tiles, 96 px = 15% overlap, batch 4), so the seam merger has real work.
Every object scores at least 0.29 at its best anchor, so rsdl:detect must find each exactly once:
the table sets its count against the objects painted.

Each measured run is a child process, its peak RSS from ``os.wait4`` (``bench_common``):

* rsdl: ``processing.run("rsdl:detect")`` in a headless QgsApplication, boxes output to a
  GeoPackage (model load, read, normalise, infer, decode, merge, write, copy to OUTPUT).
* ort: a bare onnxruntime loop. The raster is read into RAM and the same DetectionPlan tiles are
  cut and normalised untimed; only ``session.run`` over the same batches is timed. rsdl / ort is
  the engine's overhead over the model itself (goal: <= 1.15).
* wide: rsdl on a raster as wide as the largest size and as tall as the smallest: memory may
  grow with the width (a band of tile rows), never with the height.
* stages: one more rsdl run (at the smallest size unless ``--stages-size``) with timers around
  session.run, decoding, the seam merger and the writers: each one's share of rsdl's time.
* merge: ``core/objects/seam_merge.SeamMerger`` alone, fed the per-tile detections a detector
  would give for ``--merge-objects`` non-overlapping objects (8-40 px) spread over the
  DetectionPlan of a ``--merge-size`` raster (each object clipped to every tile it meets, scores
  jittered per tile), released per batch as rsdl:detect does; timed from the first ``add`` to
  ``finish``. Every object lies whole in some tile, so the merged count must equal the objects.

The machine may be shared: before each measured run the bench waits (up to ``--settle`` seconds)
for other processes to go quiet, reruns when they took over 10 % of the CPUs (``--retries``), and
the tables show their share ("others"); ``--settle 0 --retries 0`` turns that off.

    python tests/bench/bench_detect.py [--sizes 4000,16000] [--tile 640] [--overlap 96] [--batch 4]
        [--repeats 1] [--threads 0] [--stages-size 0] [--merge-objects 50000] [--merge-size 16000]
        [--settle 60] [--retries 2] [--wait-budget 300]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from bench_common import (
    SETTLE_BUSY,
    Measured,
    add_quiet_options,
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
PIXEL_SIZE = 0.5
BLOCK = 256  # input GeoTIFF tile side, and the rows written per generation strip
GDAL_CACHE_MB = 128  # same block cache in every child
CLASS_NAMES = ("building", "tree", "vehicle")
PITCH = 160  # object grid cell; objects lie in the cell's first SPAN px, so >= 96 px apart
SPAN = 64
SIDES = (16, 40)  # object sides, px: from 16 px every object scores >= 0.29 at its best anchor
OCCUPIED = 0.8  # share of grid cells holding an object
OBJECT_BAND3 = 230
BOX_GAIN = 0.01  # the net's own distances' weight in the stride-8 boxes
STAGES = (
    # (module, attribute path, label); the labels are summed where they repeat.
    ("rsdl_qgis_plugin.inference.tiled_detection", "TiledDetection.run", "TiledDetection.run (all)"),
    ("rsdl_qgis_plugin.core.contract.model_spec", "ModelSpec.normalize", "  normalise"),
    ("rsdl_qgis_plugin.inference.backends", "OnnxBackend._forward", "  session.run"),
    ("rsdl_qgis_plugin.inference.detector", "ObjectDecoder.decode", "  decode (incl. per-tile NMS)"),
    ("rsdl_qgis_plugin.core.objects.seam_merge", "SeamMerger.add", "  seam merge (add, release, finish)"),
    ("rsdl_qgis_plugin.core.objects.seam_merge", "SeamMerger.release", "  seam merge (add, release, finish)"),
    ("rsdl_qgis_plugin.core.objects.seam_merge", "SeamMerger.finish", "  seam merge (add, release, finish)"),
    ("rsdl_qgis_plugin.qgis_io.object_writer", "ObjectFileWriter.write", "  write objects (temporary GPKG)"),
    ("rsdl_qgis_plugin.processing_provider.detect", "copy_objects", "copy objects to OUTPUT"),
)


# -- the detector --------------------------------------------------------------------------------


def build_detector(path: Path, tile: int) -> dict[str, Any]:
    """Write the small YOLO-like detector (module docstring) as ONNX; returns its cost."""
    import onnx
    import torch
    from torch import nn

    from tests.detector_models import _YoloV8  # the geometric detector of the test models

    def conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

    class SmallYolo(nn.Module):
        strides = (8, 16, 32)

        def __init__(self, classes: int, width: int = 16, head: int = 64, bins: int = 16) -> None:
            super().__init__()
            c = width
            self.stem = nn.Sequential(conv(3, c, 2), conv(c, 2 * c, 2), conv(2 * c, 2 * c))
            self.levels = nn.ModuleList(
                nn.Sequential(conv(cin, cout, 2), conv(cout, cout))
                for cin, cout in ((2 * c, 4 * c), (4 * c, 8 * c), (8 * c, 16 * c))
            )
            chans = (4 * c, 8 * c, 16 * c)
            self.box = nn.ModuleList(
                nn.Sequential(conv(ch, head), conv(head, head), nn.Conv2d(head, 4 * bins, 1)) for ch in chans
            )
            self.cls = nn.ModuleList(
                nn.Sequential(conv(ch, head), conv(head, head), nn.Conv2d(head, classes, 1)) for ch in chans
            )
            self.bins = bins
            self.register_buffer("bin_values", torch.arange(bins, dtype=torch.float32).view(1, 1, bins, 1))
            self.prior = _YoloV8(classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feature = self.stem(x)
            levels = []
            for level, stride in enumerate(self.strides):
                feature = self.levels[level](feature)
                batch, _, rows, cols = feature.shape
                bins = self.box[level](feature).view(batch, 4, self.bins, rows * cols).softmax(2)
                distances = (bins * self.bin_values).sum(2) * stride  # (B, 4, N): left, top, right, bottom
                scores = torch.sigmoid(self.cls[level](feature).flatten(2))
                if level == 0:
                    prior = self.prior(x)
                    x1y1 = prior[:, 0:2] - prior[:, 2:4] / 2 - BOX_GAIN * distances[:, 0:2]
                    x2y2 = prior[:, 0:2] + prior[:, 2:4] / 2 + BOX_GAIN * distances[:, 2:4]
                    scores = prior[:, 4:] * (0.8 + 0.2 * scores)
                else:
                    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
                    anchors = (torch.stack([xs, ys]).view(1, 2, -1).float() + 0.5) * stride
                    x1y1, x2y2 = anchors - distances[:, 0:2], anchors + distances[:, 2:4]
                    scores = 0.2 * scores
                levels.append(torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1, scores], dim=1))
            return torch.cat(levels, dim=2)

    torch.manual_seed(0)
    net = SmallYolo(len(CLASS_NAMES)).eval()
    macs = [0]

    def count(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
        kernel = module.kernel_size[0] * module.kernel_size[1]
        macs[0] += output[0].numel() * module.in_channels // module.groups * kernel

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        anchors = net(torch.zeros(1, 3, tile, tile)).shape[2]
    for hook in hooks:
        hook.remove()  # tracing for the export must not count
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, tile, tile),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    dims = model.graph.output[0].type.tensor_type.shape.dim  # as Ultralytics declares them
    del dims[:]
    dims.add().dim_param = "batch"
    for size in (4 + len(CLASS_NAMES), anchors):
        dims.add().dim_value = size
    props = {
        "model_type": "Detector",
        "class_names": {str(k): name for k, name in enumerate(CLASS_NAMES)},
        "tile_size": tile,
        "max_pixel_value": 255,
        "standardization_mean": [0.0],
        "standardization_std": [1.0],
    }
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in props.items()})
    onnx.save(model, str(path))
    return {"path": str(path), "gflops": 2 * macs[0] / 1e9, "anchors": int(anchors)}


# -- data ----------------------------------------------------------------------------------------


def painted_objects(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(N, 5) int64 rows ``x, y, w, h, class`` of the objects of a width x height raster."""
    rng = np.random.default_rng(seed)
    rows, cols = (height - SPAN) // PITCH + 1, (width - SPAN) // PITCH + 1
    cell_row, cell_col = np.divmod(np.flatnonzero(rng.random(rows * cols) < OCCUPIED), cols)
    count = len(cell_row)
    sides = rng.integers(SIDES[0], SIDES[1] + 1, (count, 2))
    x = cell_col * PITCH + (rng.random(count) * (SPAN - sides[:, 0] + 1)).astype(np.int64)
    y = cell_row * PITCH + (rng.random(count) * (SPAN - sides[:, 1] + 1)).astype(np.int64)
    classes = rng.integers(0, len(CLASS_NAMES), count)
    return np.column_stack([x, y, sides[:, 0], sides[:, 1], classes]).astype(np.int64)


def make_raster(path: Path, width: int, height: int, seed: int = 0) -> int:
    """Write the raster (module docstring); returns the number of objects painted."""
    from osgeo import gdal, osr

    from tests.detector_models import class_value

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
    objects = painted_objects(width, height, seed)
    values = np.array([class_value(k, len(CLASS_NAMES)) for k in range(len(CLASS_NAMES))], dtype=np.uint8)
    rng = np.random.default_rng(seed + 1)
    x = np.arange(width, dtype=np.float32)
    for top in range(0, height, BLOCK):
        rows = min(BLOCK, height - top)
        y = np.arange(top, top + rows, dtype=np.float32)[:, None]
        strip = np.zeros((3, rows, width), dtype=np.uint8)
        for band in (1, 2):
            smooth = 110 + 60 * np.sin(x / (700 + 200 * band)) * np.cos(y / (500 + 150 * band))
            noise = rng.integers(-15, 16, (rows, width), dtype=np.int16)
            strip[band] = np.clip(smooth + noise, 0, 255)
        here = objects[(objects[:, 1] < top + rows) & (objects[:, 1] + objects[:, 3] > top)]
        for ox, oy, ow, oh, oc in here:
            r0, r1 = max(oy - top, 0), min(oy + oh - top, rows)
            strip[0, r0:r1, ox : ox + ow] = 255
            strip[1, r0:r1, ox : ox + ow] = values[oc]
            strip[2, r0:r1, ox : ox + ow] = OBJECT_BAND3
        dataset.WriteRaster(0, top, width, rows, strip.tobytes(), width, rows, gdal.GDT_Byte, [1, 2, 3])
        dataset.FlushCache()  # write each finished row of tiles now: keeps generation memory flat
    dataset = None
    return len(objects)


def detection_plan(width: int, height: int, tile: int, overlap: int) -> Any:
    from rsdl_qgis_plugin.core.tiling.plan import DetectionPlan

    return DetectionPlan(width, height, tile, overlap)


# -- children -------------------------------------------------------------------------------------


def _attribute(module: str, path: str) -> tuple[Any, str]:
    """(owner, name) of ``module.path``, e.g. ('...detector', 'ObjectDecoder.decode')."""
    import importlib

    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def child_rsdl(args: argparse.Namespace) -> dict[str, Any]:
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    processing = start_processing()
    timers: dict[str, list[float]] | None = None
    if args.instrument:
        timers = {}
        for module, path, label in STAGES:
            timers[label] = [0.0, 0.0, 0]
            time_calls(timers, *_attribute(module, path), label)
    before_mib = status_mib("VmRSS")
    parameters = {
        "INPUT": args.raster,
        "MODEL": args.model,
        "TILE_SIZE": args.tile,
        "OVERLAP": overlap_percent(args.tile, args.overlap),
        "BATCH_SIZE": args.batch,
        "THREADS": args.threads,
        "RESAMPLE": False,
        "OUTPUT_GEOMETRY": 0,  # boxes
        "OUTPUT": args.output,
    }
    start = time.perf_counter()
    result = processing.run(
        "rsdl:detect", parameters, context=QgsProcessingContext(), feedback=QgsProcessingFeedback()
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "before_mib": before_mib,
        "tiles": int(result["TILES"]),
        "objects": int(result["OBJECTS"]),
        "timers": timers,
    }


def child_ort(args: argparse.Namespace) -> dict[str, Any]:
    from osgeo import gdal

    from rsdl_qgis_plugin.core.tiling.plan import pad_tile

    image = gdal.Open(args.raster).ReadAsArray()  # (bands, rows, cols), untimed
    height, width = image.shape[1:]
    session, spec = session_and_spec(args.model, args.threads)
    name = session.get_inputs()[0].name
    plan = detection_plan(width, height, args.tile, args.overlap)
    tiles = list(plan)
    seconds = 0.0
    for first in range(0, len(tiles), args.batch):
        cut = []
        for tile in tiles[first : first + args.batch]:
            row, col, rows, cols = tile.read_window(width, height)
            cut.append(pad_tile(image[:, row : row + rows, col : col + cols], tile.padding(width, height)))
        batch = spec.normalize(np.stack(cut))
        start = time.perf_counter()
        session.run(None, {name: batch})
        seconds += time.perf_counter() - start
    return {"seconds": seconds, "tiles": len(tiles)}


def merge_input(args: argparse.Namespace) -> tuple[Any, list[Any], int]:
    """(plan, one Detections per tile, objects): ``args.merge_objects`` objects, 8-40 px, one per
    cell of a square grid over the raster, as a detector would report them tile by tile."""
    from rsdl_qgis_plugin.core.objects.detections import Detections

    size = args.merge_size
    rng = np.random.default_rng(1)
    per_side = math.ceil(math.sqrt(args.merge_objects))
    pitch = size / per_side
    cells = rng.choice(per_side * per_side, args.merge_objects, replace=False)
    row, col = np.divmod(cells, per_side)
    sides = rng.uniform(8.0, min(40.0, pitch - 2.0), (len(cells), 2))
    x1 = col * pitch + rng.random(len(cells)) * (pitch - sides[:, 0] - 1)
    y1 = row * pitch + rng.random(len(cells)) * (pitch - sides[:, 1] - 1)
    boxes = np.column_stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]])
    scores = rng.uniform(0.3, 0.95, len(cells))
    classes = rng.integers(0, len(CLASS_NAMES), len(cells))
    plan = detection_plan(size, size, args.tile, args.overlap)
    per_tile = []
    for tile in plan:
        left, top = tile.col, tile.row
        inside = (
            (boxes[:, 0] < left + tile.size)
            & (boxes[:, 2] > left)
            & (boxes[:, 1] < top + tile.size)
            & (boxes[:, 3] > top)
        )
        seen = np.clip(boxes[inside] - [left, top, left, top], 0, tile.size)  # as decoders clip
        visible = (seen[:, 2] - seen[:, 0] >= 2) & (seen[:, 3] - seen[:, 1] >= 2)
        jitter = rng.normal(0.0, 0.01, int(visible.sum()))
        per_tile.append(Detections(seen[visible], scores[inside][visible] + jitter, classes[inside][visible]))
    return plan, per_tile, len(cells)


def child_merge(args: argparse.Namespace) -> dict[str, Any]:
    from rsdl_qgis_plugin.core.objects.seam_merge import SeamMerger

    plan, per_tile, objects = merge_input(args)  # untimed
    tiles = list(plan)
    merged, pending = 0, 0
    start = time.perf_counter()
    merger = SeamMerger(plan.width, plan.height, iou_threshold=0.45)
    for first in range(0, len(tiles), args.batch):  # as TiledDetection: release after each batch
        for tile in tiles[first : first + args.batch]:
            merger.add(tile, per_tile[tile.index])
        pending = max(pending, merger.pending)
        following = first + args.batch
        if following < len(tiles):
            merged += len(merger.release(plan.window(following).row))
    merged += len(merger.finish())
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "objects": objects,
        "fed": sum(len(d) for d in per_tile),
        "merged": merged,
        "max_pending": pending,
        "tiles": len(tiles),
    }


def child_model(args: argparse.Namespace) -> dict[str, Any]:
    Path(args.output).mkdir(parents=True, exist_ok=True)
    return {"seconds": 0.0, **build_detector(Path(args.output) / f"small_yolo_{args.tile}.onnx", args.tile)}


def child_raster(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    objects = make_raster(Path(args.raster), args.width, args.height)
    return {"seconds": time.perf_counter() - start, "objects": objects}


CHILDREN: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "rsdl": child_rsdl,
    "ort": child_ort,
    "merge": child_merge,
    # Helpers, not measured; in children so that the parent stays smaller than anything measured
    # (exec records the parent's peak RSS in each child's ru_maxrss).
    "model": child_model,
    "raster": child_raster,
}


# -- parent -------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    tiles: int
    painted: int
    rsdl: Measured
    ort: Measured | None
    stages: Measured | None = None
    height: int | None = None  # None: size x size

    @property
    def name(self) -> str:
        return f"{self.size} x {self.height or self.size}"


def child_options(raster: Path, model: Path, output: Path, args: argparse.Namespace) -> list[str]:
    settings = {"tile": args.tile, "overlap": args.overlap, "batch": args.batch, "threads": args.threads}
    options = ["--raster", str(raster), "--model", str(model), "--output", str(output)]
    for name, value in settings.items():
        options += [f"--{name}", str(value)]
    return options


def write_raster(work: Path, env: dict[str, str], width: int, height: int) -> tuple[Path, int]:
    """The raster of ``make_raster`` and its number of objects."""
    raster = work / f"input_{width}x{height}.tif"
    options = ["--raster", str(raster), "--width", str(width), "--height", str(height)]
    written = run_helper(SCRIPT, "raster", options, work, env)
    print(
        f"  {width} x {height}: raster with {written['objects']} objects written in "
        f"{written['seconds']:.1f} s ({raster.stat().st_size / 2**20:.0f} MiB on disk)",
        flush=True,
    )
    return raster, written["objects"]


def measure_run(
    mode: str, options: list[str], work: Path, env: dict[str, str], args: argparse.Namespace
) -> Measured:
    """``measure``, removing the objects rsdl:detect wrote."""
    try:
        return measure(SCRIPT, mode, options, work, env, args)
    finally:
        (work / "objects.gpkg").unlink(missing_ok=True)


def bench_size(
    size: int, args: argparse.Namespace, work: Path, model: Path, env: dict[str, str]
) -> SizeResult:
    raster, painted = write_raster(work, env, size, size)
    common = child_options(raster, model, work / "objects.gpkg", args)

    def run(mode: str, options: list[str]) -> Measured:
        return measure_run(mode, options, work, env, args)

    runs: dict[str, list[Measured]] = {"rsdl": [], "ort": []}
    for repeat in range(args.repeats):  # alternate the order so drift hits both alike
        for mode in ("rsdl", "ort") if repeat % 2 == 0 else ("ort", "rsdl"):
            runs[mode].append(run(mode, common))
    tiles = len(detection_plan(size, size, args.tile, args.overlap))
    for mode, measured in runs.items():
        if measured[0].result["tiles"] != tiles:
            raise RuntimeError(f"{mode} ran {measured[0].result['tiles']} tiles, the plan has {tiles}")
    stages = run("rsdl", [*common, "--instrument"]) if size == args.stages_size else None
    raster.unlink()
    rsdl, ort = best(runs["rsdl"]), best(runs["ort"])
    print(
        f"  {size} x {size}: rsdl {rsdl.seconds:.1f} s ({rsdl.result['objects']} objects), "
        f"ort {ort.seconds:.1f} s",
        flush=True,
    )
    return SizeResult(size, tiles, painted, rsdl, ort, stages)


def bench_wide(args: argparse.Namespace, work: Path, model: Path, env: dict[str, str]) -> SizeResult:
    """rsdl on a raster as wide as the largest size and as tall as the smallest."""
    width, height = max(args.size_list), min(args.size_list)
    raster, painted = write_raster(work, env, width, height)
    try:
        rsdl = measure_run("rsdl", child_options(raster, model, work / "objects.gpkg", args), work, env, args)
    finally:
        raster.unlink()
    tiles = len(detection_plan(width, height, args.tile, args.overlap))
    return SizeResult(width, tiles, painted, rsdl, None, None, height)


def merge_options(args: argparse.Namespace) -> list[str]:
    return [
        *("--merge-objects", str(args.merge_objects), "--merge-size", str(args.merge_size)),
        *("--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch)),
    ]


def print_report(
    results: list[SizeResult],
    wide: SizeResult | None,
    merge: Measured | None,
    model: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    threads = args.threads or "onnxruntime's default"
    print()
    print(
        f"detect: small YOLO-like detector ({model['gflops']:.1f} GFLOPs per {args.tile} px tile, "
        f"{model['anchors']} anchors, YOLOv8 layout), tiles {args.tile} px, overlap {args.overlap} px, "
        f"batch {args.batch}, boxes output; best of {args.repeats}; GDAL_CACHEMAX={GDAL_CACHE_MB} MB; "
        f"model threads: {threads}; {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| raster | tiles | objects painted | objects found | rsdl s | ort s | rsdl / ort | others "
        "| rsdl peak MiB | before run MiB |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in [*results, *([wide] if wide else [])]:
        others = max(m.other_cpu for m in (r.rsdl, r.ort) if m is not None)
        ort = f"{r.ort.seconds:.2f} | {r.rsdl.seconds / r.ort.seconds:.3f}" if r.ort else "| "
        print(
            f"| {r.name} | {r.tiles} | {r.painted} | {r.rsdl.result['objects']} | {r.rsdl.seconds:.2f} "
            f"| {ort} | {others:.0%} | {r.rsdl.peak_mib:.0f} | {r.rsdl.result['before_mib']:.0f} |"
        )
    print(
        "\nrsdl s: processing.run('rsdl:detect') (load the model, read, normalise, infer, decode, merge, "
        "write the GeoPackage);\nort s: session.run alone over the same tiles and batches, already in RAM. "
        "others: CPU share other processes\nused meanwhile (noise). rsdl peak MiB: peak RSS of the rsdl "
        "child (os.wait4); before run: its RSS with QGIS initialised."
    )
    staged = [r for r in results if r.stages is not None]
    if staged:
        print_stages(staged[0])
    if merge is not None:
        m = merge.result
        print()
        print(
            f"SeamMerger alone: {m['objects']} objects over a {args.merge_size} x {args.merge_size} raster's "
            f"DetectionPlan ({m['tiles']} tiles), released every {args.batch} tiles:"
        )
        print()
        print(
            "| objects | detections fed | merged | max held | s | ms per 1,000 objects | others | peak MiB |"
        )
        print("|--:|--:|--:|--:|--:|--:|--:|--:|")
        print(
            f"| {m['objects']} | {m['fed']} | {m['merged']} | {m['max_pending']} | {merge.seconds:.2f} "
            f"| {1e6 * merge.seconds / m['objects']:.1f} | {merge.other_cpu:.0%} | {merge.peak_mib:.0f} |"
        )

    print()
    largest = results[-1]
    if largest.ort is not None:
        ratio = largest.rsdl.seconds / largest.ort.seconds
        print(
            f"GOAL time:   rsdl:detect / onnxruntime at {largest.name} = {ratio:.3f} (goal <= 1.15): "
            f"{'MET' if ratio <= 1.15 else 'NOT MET'}"
        )
    smallest = results[0]
    print(
        f"GOAL memory: rsdl:detect peak RSS {smallest.rsdl.peak_mib:.0f} MiB at {smallest.name}, "
        f"{largest.rsdl.peak_mib:.0f} MiB at {largest.name}: ratio "
        f"{largest.rsdl.peak_mib / smallest.rsdl.peak_mib:.2f} while the raster grows "
        f"{(largest.size / smallest.size) ** 2:.0f}x (goal: flat)"
    )
    if wide is not None:
        added = largest.rsdl.peak_mib - wide.rsdl.peak_mib
        print(
            f"             same width {largest.size}, height {wide.height} -> {largest.size}: "
            f"{wide.rsdl.peak_mib:.0f} -> {largest.rsdl.peak_mib:.0f} MiB ({added:+.0f} MiB); "
            "the rest comes with the width"
        )
    if merge is not None:
        print(
            f"seam merging: {1e6 * merge.seconds / merge.result['objects']:.1f} ms per 1,000 objects "
            f"({merge.result['fed']} tile detections of {merge.result['objects']} objects)"
        )
        if merge.result["merged"] != merge.result["objects"]:
            print(f"WRONG: the merger kept {merge.result['merged']} of {merge.result['objects']} objects")
    for r in [*results, *([wide] if wide else [])]:
        if r.rsdl.result["objects"] != r.painted:
            print(f"WRONG: at {r.name} rsdl:detect found {r.rsdl.result['objects']} of {r.painted} objects")
    measured = [m for r in results for m in (r.rsdl, r.ort) if m is not None]
    noisy = max(m.other_cpu for m in measured)
    if noisy > SETTLE_BUSY:
        print(f"note: other processes took up to {noisy:.0%} of the CPUs during these runs; times are noisy")


def print_stages(result: SizeResult) -> None:
    """The stage timers of the extra run, with what no timer covers."""
    assert result.stages is not None
    total = result.stages.seconds
    timers = result.stages.result["timers"]
    run = timers[STAGES[0][2]][0]
    inner = sum(seconds for label, (seconds, _cpu, _calls) in timers.items() if label.startswith("  "))
    rows = [
        (label.replace("  ", "in run: ", 1), seconds, int(calls))
        for label, (seconds, _cpu, calls) in timers.items()
    ]
    rows.insert(len(rows) - 1, ("in run: rest (waiting for the reader, stacking)", run - inner, 0))
    rows.append(("outside them (load the model, open the raster, QGIS)", total - run - rows[-1][1], 0))
    print()
    print(f"rsdl:detect's stages at {result.name} (an extra run with timers, {total:.2f} s):")
    print()
    print("| stage | s | share of rsdl:detect | calls |")
    print("|---|--:|--:|--:|")
    for label, seconds, calls in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / total:.1%} | {calls or ''} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="4000,16000", help="raster sizes (pixels a side), comma separated")
    parser.add_argument("--tile", type=int, default=640, help="tile size in pixels (TILE_SIZE)")
    parser.add_argument("--overlap", type=int, default=96, help="tile overlap in pixels (96 = 15%% of 640)")
    parser.add_argument("--batch", type=int, default=4, help="tiles per model call")
    parser.add_argument("--repeats", type=int, default=1, help="runs of rsdl and ort per size (best of)")
    parser.add_argument(
        "--threads", type=int, default=0, help="model CPU threads for both (0: onnxruntime's default)"
    )
    parser.add_argument(
        "--stages-size",
        type=int,
        help="raster size of one extra rsdl run with stage timers (default: the smallest; 0: none)",
    )
    parser.add_argument(
        "--merge-objects", type=int, default=50000, help="objects of the seam-merger bench (0: skip it)"
    )
    parser.add_argument("--merge-size", type=int, default=16000, help="raster size of the seam-merger bench")
    add_quiet_options(parser)
    # Internal: the children.
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
    if args.stages_size is None:
        args.stages_size = args.size_list[0]
    elif args.stages_size and args.stages_size not in args.size_list:
        raise SystemExit(f"--stages-size {args.stages_size} is not one of --sizes {args.sizes}")
    overlap_percent(args.tile, args.overlap)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rsdl-bench-detect-") as work_dir:
        work = Path(work_dir)
        env = child_env(work, GDAL_CACHE_MB)
        model = run_helper(
            SCRIPT, "model", ["--output", str(work / "models"), "--tile", str(args.tile)], work, env
        )
        print(
            f"bench_detect: sizes {args.sizes}, detector {model['gflops']:.1f} GFLOPs per tile, "
            f"work folder {work}",
            flush=True,
        )
        results = [bench_size(size, args, work, Path(model["path"]), env) for size in args.size_list]
        wide = bench_wide(args, work, Path(model["path"]), env) if len(set(args.size_list)) > 1 else None
        merge = None
        if args.merge_objects:
            merge = measure(SCRIPT, "merge", merge_options(args), work, env, args)
    print_report(results, wide, merge, model, args)
    measured = [m for r in [*results, *([wide] if wide else [])] for m in (r.rsdl, r.ort, r.stages) if m]
    waited = sum(m.waited for m in [*measured, *([merge] if merge else [])])
    print(
        f"\ntotal runtime {time.perf_counter() - started:.0f} s, of which {waited:.0f} s waiting for "
        "other processes to go quiet"
    )


if __name__ == "__main__":
    main()
