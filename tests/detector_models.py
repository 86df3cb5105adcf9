"""Small, real detectors of synthetic scenes, written as ONNX files in each output layout rsdl reads
(YOLOv5, YOLOv8 detect, -seg, -obb, rsdl's own), and the scenes they detect. Test code only (torch).

Scenes (``paint_*``): 3 x H x W uint8. Band 1 is 255 inside objects and 0 elsewhere; band 2 holds
the class (class k of nc painted as ``round(255 k / (nc - 1))``); for oriented rectangles band 2
holds the angle code (angle = code / 255 * pi) and band 3 the size (``16 * w/4 + h/4``, sides in
multiples of 4 px from 4 to 60, w the longer).

The nets (input normalised as x / 255, the spec's max_pixel_value 255 with mean 0 and std 1):
for each anchor pixel ``(r, c)`` on a stride-8 grid (``r, c = 4 + 8 i``), sums of band 1 over
windows of ``WINDOW`` pixels along its row and column, computed as convolutions, count the object
pixels from the anchor to each edge (``L``, ``R``, ``T``, ``D``, the anchor counted in each), so the
box ``x1 = c + 1 - L, x2 = c + R, y1 = r + 1 - T, y2 = r + D`` is the object's (cut where the tile
cuts it) from any anchor inside a rectangle. The score is band 1 at the anchor times a
centredness, ``sqrt(min(L', R') / max(L', R') * min(T', D') / max(T', D'))`` with ``L' = L - 0.5``
(the distances from the anchor pixel's centre), 1 at the object's centre; class scores are
``1 - |band2 * (nc - 1) - k|`` clipped to 0..1. Everything is translation-equivariant, so tiles cut
anywhere give the same objects. Objects must be at most ``WINDOW`` px long and ``WINDOW`` px apart
along rows and columns (the windows would count a neighbour's pixels).

-seg: prototype 0 is ``20 * avgpool4(band 1) - 10`` (a logit), selected by coefficients (1, 0, ...),
so masks follow the painted shape. -obb: the centre is the centroid of band 1 in a window of
``2 * OBB_REACH + 1`` px around the anchor (first moments, as separable convolutions), w and h
come from band 3 and the angle from band 2. rsdl: per anchor as YOLOv8, then the anchors whose score
is a 3 x 3 local maximum, the best ``rows`` of them (the rest padding of score 0), with masks =
``sigmoid(20 * band1 - 10)`` inside each row's box.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's own spelling)

from tests.rasters import write_geotiff

WINDOW = 96
STRIDE = 8
OBB_REACH = 48
TILE = 640
OPSET = 17
INPUT_NAME = "images"  # Ultralytics' input name


# -- scenes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaintedObject:
    """An object painted in a scene: its box (x1, y1, x2, y2 pixel edges), class, pixels and, for
    oriented rectangles, ``(cx, cy, w, h, angle)``."""

    box: tuple[float, float, float, float]
    class_id: int
    pixels: np.ndarray  # bool (H, W) of the scene
    oriented: tuple[float, float, float, float, float] | None = None


def blank_scene(height: int = TILE, width: int = TILE) -> np.ndarray:
    """A 3-band uint8 scene with no objects."""
    return np.zeros((3, height, width), dtype=np.uint8)


def class_value(class_id: int, class_count: int) -> int:
    """Band 2's value for a class."""
    return 255 if class_count < 2 else round(255 * class_id / (class_count - 1))


def _paint(scene: np.ndarray, pixels: np.ndarray, class_id: int, class_count: int) -> PaintedObject:
    scene[0][pixels] = 255
    scene[1][pixels] = class_value(class_id, class_count)
    rows, cols = np.nonzero(pixels)
    box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
    return PaintedObject(box, class_id, pixels)


def paint_rectangle(
    scene: np.ndarray, row: int, col: int, height: int, width: int, class_id: int = 0, class_count: int = 3
) -> PaintedObject:
    """A solid rectangle of rows ``row..row+height-1`` and columns ``col..col+width-1``."""
    pixels = np.zeros(scene.shape[1:], dtype=bool)
    pixels[max(row, 0) : row + height, max(col, 0) : col + width] = True
    return _paint(scene, pixels, class_id, class_count)


def paint_octagon(
    scene: np.ndarray, row: int, col: int, height: int, width: int, class_id: int = 0, class_count: int = 3
) -> PaintedObject:
    """A rectangle with its corners cut at 45 degrees (by a quarter of its shorter side): the rows
    and columns through its middle keep the full extent, so its box is the rectangle's."""
    rows, cols = np.mgrid[0 : scene.shape[1], 0 : scene.shape[2]]
    cut = min(height, width) // 4
    dy = np.minimum(rows - row, row + height - 1 - rows)
    dx = np.minimum(cols - col, col + width - 1 - cols)
    pixels = (dy >= 0) & (dx >= 0) & (dx + dy >= cut)
    return _paint(scene, pixels, class_id, class_count)


def paint_rotated_rectangle(
    scene: np.ndarray, cx: int, cy: int, width: int, height: int, angle: float
) -> PaintedObject:
    """A rectangle of sides ``width`` >= ``height`` (multiples of 4, 4..60) centred on the pixel
    corner (cx, cy), its ``width`` side turned ``angle`` radians from the x axis towards y. The angle
    is rounded to the code band 2 can hold; the object records the painted one."""
    if not (width >= height and width % 4 == 0 and height % 4 == 0 and height >= 4 and width <= 60):
        raise ValueError("sides must be multiples of 4 from 4 to 60, width >= height")
    code = round(angle % math.pi / math.pi * 255) % 255
    angle = code * math.pi / 255
    rows, cols = np.mgrid[0 : scene.shape[1], 0 : scene.shape[2]]
    x, y = cols + 0.5 - cx, rows + 0.5 - cy
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    pixels = (np.abs(u) < width / 2) & (np.abs(v) < height / 2)
    scene[0][pixels] = 255
    scene[1][pixels] = code
    scene[2][pixels] = 16 * (width // 4) + height // 4
    rows_in, cols_in = np.nonzero(pixels)
    box = (float(cols_in.min()), float(rows_in.min()), float(cols_in.max() + 1), float(rows_in.max() + 1))
    return PaintedObject(box, 0, pixels, (float(cx), float(cy), float(width), float(height), angle))


def write_scene(path: Path, scene: np.ndarray, pixel_size: float = 0.5, epsg: int = 32633) -> Path:
    """The scene as a GeoTIFF (north up, origin at 500000, 5000000)."""
    return write_geotiff(path, scene, (500000.0, pixel_size, 0.0, 5000000.0, 0.0, -pixel_size), epsg)


def normalized(scene: np.ndarray) -> np.ndarray:
    """A scene (3, H, W) or batch (N, 3, H, W) as the models take it: float32 / 255."""
    batch = scene if scene.ndim == 4 else scene[None]
    return batch.astype(np.float32) / np.float32(255)


# -- nets ------------------------------------------------------------------------------------------


def _ones(rows: int, cols: int) -> torch.Tensor:
    return torch.ones(1, 1, rows, cols)


class _Anchors(nn.Module):
    """Per anchor: presence, chord lengths (L, R, T, D), pixel coordinates (c, r) and centredness."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("row_kernel", _ones(1, WINDOW))
        self.register_buffer("col_kernel", _ones(WINDOW, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s, o, k = STRIDE, STRIDE // 2, WINDOW - 1
        p = x[:, 0:1]
        rows = p[:, :, o::s, :]
        cols = p[:, :, :, o::s]
        left = F.conv2d(F.pad(rows, (k, 0)), self.row_kernel)[:, :, :, o::s]
        right = F.conv2d(F.pad(rows, (0, k)), self.row_kernel)[:, :, :, o::s]
        top = F.conv2d(F.pad(cols, (0, 0, k, 0)), self.col_kernel)[:, :, o::s, :]
        down = F.conv2d(F.pad(cols, (0, 0, 0, k)), self.col_kernel)[:, :, o::s, :]
        presence = p[:, :, o::s, o::s]
        ones = torch.ones_like(presence)
        c = o + s * (torch.cumsum(ones, dim=3) - 1)
        r = o + s * (torch.cumsum(ones, dim=2) - 1)
        lx, rx = (left - 0.5).clamp(min=0.5), (right - 0.5).clamp(min=0.5)
        ty, dy = (top - 0.5).clamp(min=0.5), (down - 0.5).clamp(min=0.5)
        centred = torch.sqrt(
            torch.minimum(lx, rx) / torch.maximum(lx, rx) * torch.minimum(ty, dy) / torch.maximum(ty, dy)
        )
        return {
            "presence": presence,
            "x1": c + 1 - left,
            "x2": c + right,
            "y1": r + 1 - top,
            "y2": r + down,
            "c": c,
            "r": r,
            "score": presence * centred,
            "band2": x[:, 1:2, o::s, o::s],
            "band3": x[:, 2:3, o::s, o::s],
        }


def _class_scores(band2: torch.Tensor, class_count: int) -> torch.Tensor:
    if class_count == 1:
        return torch.ones_like(band2)
    k = torch.arange(class_count, dtype=torch.float32).reshape(1, -1, 1, 1)
    return (1 - (band2 * (class_count - 1) - k).abs()).clamp(0, 1)


def _centre_size(a: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [(a["x1"] + a["x2"]) / 2, (a["y1"] + a["y2"]) / 2, a["x2"] - a["x1"], a["y2"] - a["y1"]]


class _YoloV8(nn.Module):
    def __init__(self, class_count: int, mask_coefficients: int = 0) -> None:
        super().__init__()
        self.anchors = _Anchors()
        self.class_count = class_count
        self.mask_coefficients = mask_coefficients
        if mask_coefficients:
            selector = torch.zeros(1, mask_coefficients, 1, 1)
            selector[0, 0] = 1.0
            self.register_buffer("selector", selector)

    def forward(self, x: torch.Tensor):
        a = self.anchors(x)
        scores = a["score"] * _class_scores(a["band2"], self.class_count)
        columns = [*_centre_size(a), scores]
        if not self.mask_coefficients:
            return torch.cat(columns, dim=1).flatten(2)
        columns.append(a["presence"] * 0 + self.selector)
        pooled = F.avg_pool2d(x[:, 0:2], 4)
        prototypes = torch.cat(
            [20 * pooled[:, 0:1] - 10, pooled[:, 1:2].expand(-1, self.mask_coefficients - 1, -1, -1)], dim=1
        )
        return torch.cat(columns, dim=1).flatten(2), prototypes


class _YoloV5(nn.Module):
    def __init__(self, class_count: int) -> None:
        super().__init__()
        self.anchors = _Anchors()
        self.class_count = class_count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.anchors(x)
        columns = [*_centre_size(a), a["score"], _class_scores(a["band2"], self.class_count)]
        return torch.cat(columns, dim=1).flatten(2).transpose(1, 2)


class _YoloObb(nn.Module):
    """Centre from the centroid of band 1 around the anchor; w, h from band 3; angle from band 2."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors = _Anchors()
        offsets = torch.arange(-OBB_REACH, OBB_REACH + 1, dtype=torch.float32)
        size = len(offsets)
        self.register_buffer("horizontal", torch.stack([torch.ones(size), offsets]).reshape(2, 1, 1, size))
        vertical = torch.zeros(3, 2, size, 1)
        vertical[0, 0, :, 0] = 1  # M00
        vertical[1, 0, :, 0] = offsets  # M01 (sum of dy)
        vertical[2, 1, :, 0] = 1  # M10 (sum of dx)
        self.register_buffer("vertical", vertical)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, o, reach = STRIDE, STRIDE // 2, OBB_REACH
        a = self.anchors(x)
        p = x[:, 0:1]
        across = F.conv2d(F.pad(p, (reach, reach)), self.horizontal)[:, :, :, o::s]
        moments = F.conv2d(F.pad(across, (0, 0, reach, reach)), self.vertical)[:, :, o::s, :]
        mass = moments[:, 0:1].clamp(min=1)
        cx = a["c"] + 0.5 + moments[:, 2:3] / mass
        cy = a["r"] + 0.5 + moments[:, 1:2] / mass
        size = torch.round(a["band3"] * 255)
        w = 4 * torch.floor(size / 16)
        h = size - 16 * torch.floor(size / 16)
        angle = torch.round(a["band2"] * 255) * (math.pi / 255)
        return torch.cat([cx, cy, w, 4 * h, a["score"], angle], dim=1).flatten(2)


class _Rsdl(nn.Module):
    def __init__(self, class_count: int, rows: int, masks: bool) -> None:
        super().__init__()
        self.anchors = _Anchors()
        self.class_count = class_count
        self.rows = rows
        self.masks = masks

    def forward(self, x: torch.Tensor):
        a = self.anchors(x)
        classes = _class_scores(a["band2"], self.class_count)
        best, class_ids = classes.max(dim=1, keepdim=True)
        score = a["score"] * best
        peak = (score == F.max_pool2d(score, 3, stride=1, padding=1)).float()
        flat = (score * peak).flatten(1)
        scores, index = torch.topk(flat, self.rows, dim=1)
        boxes = torch.cat([a["x1"], a["y1"], a["x2"], a["y2"]], dim=1).flatten(2).transpose(1, 2)
        boxes = torch.gather(boxes, 1, index.unsqueeze(2).expand(-1, -1, 4))
        class_ids = torch.gather(class_ids.flatten(1), 1, index)
        if not self.masks:
            return boxes, scores, class_ids
        p = x[:, 0:1]
        ones = torch.ones_like(p)
        xs = torch.cumsum(ones, dim=3) - 0.5  # pixel centres
        ys = torch.cumsum(ones, dim=2) - 0.5
        x1, y1, x2, y2 = (boxes[:, :, i].unsqueeze(2).unsqueeze(3) for i in range(4))
        inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        masks = torch.sigmoid(20 * p - 10) * inside.float()
        return boxes, scores, class_ids, masks


def _class_names(class_count: int) -> dict[str, str]:
    return {str(k): f"thing_{k}" for k in range(class_count)}


def _export(
    net: nn.Module,
    path: Path,
    outputs: dict[str, tuple[int | str, ...]],
    metadata: dict[str, object],
    extra: dict[str, object] | None,
) -> Path:
    """Export with a dynamic batch and tile size; ``outputs`` maps each output name to its declared
    shape (a string for a dynamic dimension), as Ultralytics' exports declare them."""
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch"} for name in outputs})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (torch.zeros(1, 3, 64, 64),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes=axes,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for size in outputs[output.name]:
            dim = dims.add()
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
    props = {
        "tile_size": TILE,
        "standardization_mean": [0.0],
        "standardization_std": [1.0],
        "max_pixel_value": 255,
        **metadata,
        **(extra or {}),
    }
    onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in props.items() if v is not None})
    path = Path(path)
    onnx.save(model, str(path))
    return path


def yolov5_detector(
    path: Path, class_count: int = 3, det_type: str | None = None, metadata: dict[str, object] | None = None
) -> Path:
    """YOLOv5 layout: output0 [B, N, 5 + nc] (cx, cy, w, h, objectness, class scores)."""
    base = {"model_type": "Detector", "class_names": _class_names(class_count), "det_type": det_type}
    return _export(
        _YoloV5(class_count), path, {"output0": ("batch", "anchors", 5 + class_count)}, base, metadata
    )


def yolov8_detector(
    path: Path, class_count: int = 3, det_type: str | None = None, metadata: dict[str, object] | None = None
) -> Path:
    """YOLOv8/v11 detect layout: output0 [B, 4 + nc, N]."""
    base = {"model_type": "Detector", "class_names": _class_names(class_count), "det_type": det_type}
    return _export(
        _YoloV8(class_count), path, {"output0": ("batch", 4 + class_count, "anchors")}, base, metadata
    )


def yolov8_seg_detector(
    path: Path,
    class_count: int = 3,
    mask_coefficients: int = 32,
    det_type: str | None = None,
    metadata: dict[str, object] | None = None,
) -> Path:
    """YOLO -seg layout: output0 [B, 4 + nc + nm, N] and prototypes output1 [B, nm, H/4, W/4]."""
    base = {"model_type": "InstanceSegmentor", "class_names": _class_names(class_count), "det_type": det_type}
    outputs = {
        "output0": ("batch", 4 + class_count + mask_coefficients, "anchors"),
        "output1": ("batch", mask_coefficients, "height_4", "width_4"),
    }
    return _export(_YoloV8(class_count, mask_coefficients), path, outputs, base, metadata)


def yolov8_obb_detector(
    path: Path, det_type: str | None = "YOLO_Ultralytics_obb", metadata: dict[str, object] | None = None
) -> Path:
    """YOLO -obb layout, one class: output0 [B, 4 + 1 + 1, N] (cx, cy, w, h, score, angle)."""
    base = {"model_type": "Detector", "class_names": {"0": "thing_0"}, "det_type": det_type}
    return _export(_YoloObb(), path, {"output0": ("batch", 6, "anchors")}, base, metadata)


def rsdl_detector(
    path: Path,
    class_count: int = 3,
    masks: bool = False,
    rows: int = 16,
    metadata: dict[str, object] | None = None,
) -> Path:
    """rsdl's layout: boxes [B, rows, 4], scores [B, rows], class_ids [B, rows] int64 and, with
    ``masks``, masks [B, rows, H, W] (an InstanceSegmentor)."""
    names = {"boxes": ("batch", rows, 4), "scores": ("batch", rows), "class_ids": ("batch", rows)}
    if masks:
        names["masks"] = ("batch", rows, "height", "width")
    base = {
        "model_type": "InstanceSegmentor" if masks else "Detector",
        "class_names": _class_names(class_count),
    }
    return _export(_Rsdl(class_count, rows, masks), path, names, base, metadata)
