"""Integrated Gradients (captum) for a segmentation class or a classifier output.

    python -m training explain --checkpoint best.ckpt --input scene.tif --window 512,512,256,256 \\
        --target building --output explain/

What is explained (``F``, one number per image):

* segmentation: the target class's logit summed over the target window (``--target-window``,
  pixels of the input window; default the whole input);
* classification: the target class's logit.

A single-channel (sigmoid) net explains its logit for class 1 and the negated logit for class 0.
Integrated Gradients attributes ``F(x) - F(baseline)`` to every band and pixel (``--steps``
points along the straight path); the baseline is the training mean pixel (zeros after
normalisation, ``mean``) or raw zero pixels (``black``). captum's convergence delta (sum of
attributions minus that difference) is reported: far from 0 means too few steps.

Outputs in ``--output``: ``attribution.png`` (image, signed attribution summed over bands,
magnitude over the image), ``explanation.json``, and for a georeferenced input
``attribution.tif``: float32, band 1 the sum over bands, then one band per model input band,
NaN where the input is nodata, on the window's CRS and transform (QGIS opens it over the scene).

The input is any raster rasterio reads (GeoTIFF, JPEG, PNG...). A classifier's window is
resampled to the spec's tile size when it differs (the GeoTIFF's transform follows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from rsdl_qgis_plugin.core.contract.model_check import check_raster_compatibility
from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.core.raster.nodata import valid_pixels

from .evaluate import add_device_argument, torch_device
from .reports.attribution import write_attribution_png
from .reports.figures import display_rgb

DEFAULT_STEPS = 32
DEFAULT_INTERNAL_BATCH = 4
BASELINES = ("mean", "black")
PixelWindow = tuple[int, int, int, int]  # (col, row, width, height), as rasterio's Window


@dataclass(frozen=True)
class Explanation:
    """Attributions (bands, H, W) of F, with F at the input and at the baseline."""

    attributions: np.ndarray
    score: float
    baseline_score: float
    delta: float  # captum: sum(attributions) - (score - baseline_score)


def target_value(spec: ModelSpec, target: str | int) -> int:
    """A class value from its number or its name in the spec."""
    if isinstance(target, int) or str(target).lstrip("-").isdigit():
        return int(target)
    for value, name in spec.class_names.items():
        if name.lower() == str(target).lower():
            return value
    known = ", ".join(f"{v} {n}" for v, n in sorted(spec.class_names.items())) or "none named"
    raise RsdlError(f"The model has no class '{target}'; its classes are: {known}.")


def _objective(net: nn.Module, target: int, target_window: PixelWindow | None, model_type: ModelType) -> Any:
    """F(x) per batch item, for captum."""

    def forward(batch: torch.Tensor) -> torch.Tensor:
        logits = net(batch)
        if logits.shape[1] == 1:  # one sigmoid channel: class 1 is +logit, class 0 is -logit
            channel, sign = 0, (1.0 if target == 1 else -1.0)
        else:
            channel, sign = target, 1.0
        if not 0 <= channel < logits.shape[1]:
            raise RsdlError(f"Class {target} is not an output of the net ({logits.shape[1]} channels).")
        selected = logits[:, channel]
        if model_type is ModelType.CLASSIFIER or selected.ndim == 1:
            return sign * selected
        if target_window is not None:
            col, row, width, height = target_window
            margin = (batch.shape[-1] - selected.shape[-1]) // 2  # a valid-convolution net's output
            selected = selected[:, row - margin : row - margin + height, col - margin : col - margin + width]
        return sign * selected.sum(dim=(1, 2))

    return forward


def integrated_gradients(
    net: nn.Module,
    image: torch.Tensor,
    spec: ModelSpec,
    target: int,
    target_window: PixelWindow | None = None,
    steps: int = DEFAULT_STEPS,
    baseline: str = "mean",
    internal_batch_size: int | None = DEFAULT_INTERNAL_BATCH,
) -> Explanation:
    """Integrated Gradients of F (see the module docstring) for one normalised (1, C, H, W) image."""
    from captum.attr import IntegratedGradients

    if baseline not in BASELINES:
        raise RsdlError(f"Unknown baseline '{baseline}'; use one of {', '.join(BASELINES)}.")
    if target_window is not None:
        col, row, width, height = target_window
        if (
            col < 0
            or row < 0
            or width < 1
            or height < 1
            or col + width > image.shape[-1]
            or row + height > image.shape[-2]
        ):
            raise RsdlError(
                f"The target window {list(target_window)} (col, row, width, height) does not lie inside "
                f"the {image.shape[-1]} x {image.shape[-2]} px input."
            )
    net = net.eval()
    if baseline == "mean":
        reference = torch.zeros_like(image)
    else:
        black = spec.normalize(np.zeros((image.shape[1], 1, 1), dtype=np.float32))
        reference = torch.from_numpy(black).to(image).expand_as(image[0]).unsqueeze(0).contiguous()
    forward = _objective(net, target, target_window, spec.model_type)
    attributions, delta = IntegratedGradients(forward).attribute(
        image,
        baselines=reference,
        n_steps=steps,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    with torch.no_grad():
        score, baseline_score = float(forward(image)[0]), float(forward(reference)[0])
    return Explanation(attributions[0].detach().cpu().numpy(), score, baseline_score, float(delta[0]))


# -- rasters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterWindow:
    """Pixels (bands, H, W) float32 of a window, valid mask, and where they lie."""

    pixels: np.ndarray
    valid: np.ndarray
    crs: Any
    transform: Any
    georeferenced: bool


def read_window(path: str | os.PathLike, spec: ModelSpec, window: PixelWindow | None) -> RasterWindow:
    """The model's bands of ``window`` (whole raster when None), with rasterio's nodata masks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # photos are fine
        with rasterio.open(path) as source:
            channels = len(spec.bands) if spec.bands else source.count
            bands = list(
                check_raster_compatibility(spec, channels, source.count, source.dtypes[0], False).bands
            )
            area = Window(*window) if window else Window(0, 0, source.width, source.height)
            inside = Window(0, 0, source.width, source.height)
            if window and (
                area.col_off < 0
                or area.row_off < 0
                or area.col_off + area.width > inside.width
                or area.row_off + area.height > inside.height
            ):
                raise RsdlError(
                    f"The window {list(window)} (col, row, width, height) does not lie inside the "
                    f"{source.width} x {source.height} px raster '{path}'."
                )
            pixels = source.read(bands, window=area, out_dtype="float32")
            valid = valid_pixels(pixels, [None] * len(bands), list(source.read_masks(bands, window=area)))
            transform = source.window_transform(area)
            georeferenced = source.crs is not None and not source.transform.is_identity
            return RasterWindow(pixels, valid, source.crs, transform, georeferenced)


def _fit_classifier(window: RasterWindow, size: int) -> RasterWindow:
    """Resample a classifier's input to its tile size (bilinear, antialiased); scale the transform."""
    height, width = window.pixels.shape[1:]
    if (height, width) == (size, size):
        return window
    pixels = torch.nn.functional.interpolate(
        torch.from_numpy(window.pixels)[None], size=(size, size), mode="bilinear", antialias=True
    )[0].numpy()
    valid = (
        torch.nn.functional.interpolate(
            torch.from_numpy(window.valid.astype(np.float32))[None, None], size=(size, size), mode="nearest"
        )[0, 0].numpy()
        > 0.5
    )
    transform = window.transform * rasterio.Affine.scale(width / size, height / size)
    return RasterWindow(pixels, valid, window.crs, transform, window.georeferenced)


def write_attribution_tiff(
    path: Path, window: RasterWindow, attributions: np.ndarray, band_names: list[str]
) -> Path:
    """float32 GeoTIFF: band 1 the sum over bands, then one band per input band; NaN is nodata."""
    total = attributions.sum(axis=0, keepdims=True)
    stack = np.concatenate([total, attributions]).astype(np.float32)
    stack[:, ~window.valid] = np.nan
    profile = {
        "driver": "GTiff",
        "width": stack.shape[2],
        "height": stack.shape[1],
        "count": stack.shape[0],
        "dtype": "float32",
        "crs": window.crs,
        "transform": window.transform,
        "nodata": float("nan"),
        "compress": "deflate",
        "predictor": 3,
    }
    with atomic_file(path) as temp, rasterio.open(temp, "w", **profile) as target:
        target.write(stack)
        for band, name in enumerate(["attribution (sum over bands)", *band_names], start=1):
            target.set_band_description(band, name)
    return path


def explain_raster(
    net: nn.Module,
    spec: ModelSpec,
    raster: str | os.PathLike,
    output_dir: str | os.PathLike,
    target: str | int,
    window: PixelWindow | None = None,
    target_window: PixelWindow | None = None,
    steps: int = DEFAULT_STEPS,
    baseline: str = "mean",
    device: str = "cpu",
    internal_batch_size: int | None = DEFAULT_INTERNAL_BATCH,
) -> dict[str, Any]:
    """Explain ``net`` on a window of ``raster``; writes the PNG, JSON and (geodata) GeoTIFF."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    value = target_value(spec, target)
    data = read_window(raster, spec, window)
    if spec.model_type is ModelType.CLASSIFIER:
        if target_window is not None:
            raise RsdlError("A target window applies to segmentation; a classifier explains its whole input.")
        if spec.tile_size:
            data = _fit_classifier(data, spec.tile_size)
    run_on = torch_device(device)
    image = torch.from_numpy(spec.normalize(data.pixels)[None]).to(run_on)
    explanation = integrated_gradients(
        net.to(run_on), image, spec, value, target_window, steps, baseline, internal_batch_size
    )
    name = spec.class_name(value)
    files = [
        write_attribution_png(
            display_rgb(image[0].cpu().numpy(), spec),
            np.where(data.valid, explanation.attributions.sum(axis=0), 0.0),
            output / "attribution.png",
            f"Integrated Gradients for class {value} ({name}): F = {explanation.score:.3g}, "
            f"baseline {explanation.baseline_score:.3g}, delta {explanation.delta:.2g}",
            target_window,
        )
    ]
    if data.georeferenced:
        bands = list(spec.bands) if spec.bands else list(range(1, data.pixels.shape[0] + 1))
        names = [f"attribution of input band {band}" for band in bands]
        files.append(
            write_attribution_tiff(output / "attribution.tif", data, explanation.attributions, names)
        )
    report = {
        "input": str(raster),
        "window": list(window) if window else None,
        "target": {"value": value, "name": name},
        "target_window": list(target_window) if target_window else None,
        "objective": "logit"
        if spec.model_type is ModelType.CLASSIFIER
        else "sum of the class logit over the target window",
        "steps": steps,
        "baseline": baseline,
        "score": explanation.score,
        "baseline_score": explanation.baseline_score,
        "convergence_delta": explanation.delta,
        "files": [path.name for path in files],
    }
    with atomic_file(output / "explanation.json", sidecars=()) as temp:
        temp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


# -- command line -------------------------------------------------------------------------------


def parse_window(text: str | None) -> PixelWindow | None:
    """'col,row,width,height' in pixels."""
    if not text:
        return None
    try:
        col, row, width, height = (int(part) for part in text.split(","))
    except ValueError:
        raise RsdlError(f"A window is 'col,row,width,height' in whole pixels, got '{text}'.") from None
    return col, row, width, height


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training explain",
        description="Integrated Gradients (captum) of a segmentation class or a classifier output on a "
        "window of a raster or image: PNG overlay, JSON, and a georeferenced attribution GeoTIFF.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="Lightning checkpoint (.ckpt)")
    parser.add_argument(
        "--input", required=True, type=Path, help="raster or image to explain (GeoTIFF, JPEG, PNG...)"
    )
    parser.add_argument("--target", required=True, help="class to explain: its value or its name")
    parser.add_argument("--output", required=True, type=Path, help="folder for the outputs (created)")
    parser.add_argument(
        "--window", help="input window 'col,row,width,height' in pixels (default: whole raster)"
    )
    parser.add_argument(
        "--target-window",
        help="segmentation: sum the class logit over 'col,row,width,height' of the input window "
        "(default: all of it)",
    )
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"integration steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--baseline", choices=BASELINES, default="mean", help="mean pixel (default) or black (raw zeros)"
    )
    parser.add_argument(
        "--internal-batch-size",
        type=int,
        default=DEFAULT_INTERNAL_BATCH,
        help=f"steps run per forward pass; lower it when memory runs out (default {DEFAULT_INTERNAL_BATCH})",
    )
    add_device_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training explain``: 0 when the explanation was written."""
    args = _parser().parse_args(argv)
    from .checkpoints import load_checkpoint_net

    try:
        net, spec = load_checkpoint_net(args.checkpoint)
        report = explain_raster(
            net,
            spec,
            args.input,
            args.output,
            args.target,
            parse_window(args.window),
            parse_window(args.target_window),
            args.steps,
            args.baseline,
            args.device,
            args.internal_batch_size,
        )
    except RsdlError as error:
        print(f"explain failed: {error}", file=sys.stderr)
        return 1
    print(
        f"class {report['target']['value']} ({report['target']['name']}): F = {report['score']:.4g}, "
        f"convergence delta {report['convergence_delta']:.2g}; wrote {', '.join(report['files'])} "
        f"in {args.output}"
    )
    return 0
