"""Self-supervised pretraining of an encoder on your own unlabelled rasters.

``python -m training pretrain 'scenes/*.tif' --output runs/ssl/encoder.pt``

Random tiles of the rasters (:mod:`training.data.unlabelled_tiles`) teach a timm EfficientNet-Lite
encoder (``tf_efficientnet_lite0`` by default) with BYOL (default) or SimCLR, lightly's heads and
losses (:mod:`training.tasks.self_supervised`), under Lightning (its progress bar shows the
loss). The output is ``torch.save({"state_dict": <backbone tensors under timm's names>,
"rsdl_pretrain": <provenance>})``, loadable with ``torch.load(weights_only=True)``; a fit takes it
as ``weights: runs/ssl/encoder.pt`` with ``backbone: tf_efficientnet_lite0`` (classifiers) or
``encoder: tu-tf_efficientnet_lite0`` (U-Nets), see :mod:`training.nets.pretrained`.

The file is written under a temporary name, read back (``weights_only=True``) and loaded strictly
into a fresh backbone, then renamed: Ctrl-C or any failure leaves no half-written file, and an
older file at the path stays as it was. Ctrl-C exits with 130.

Provenance (JSON): method, backbone, init, rasters (patterns, paths, count, bands, data type), tile
size, tiles per epoch, epochs, steps, tiles seen, batch size, lr, normalisation (per-band mean and
std, max_pixel_value, tiles measured), the loss of each epoch and the final one, seconds, seed,
precision, lightly's version and the date (UTC).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file, public_path

from .cli import auto_precision
from .data.unlabelled_tiles import (
    STATISTICS_TILES,
    TileReader,
    UnlabelledTiles,
    find_rasters,
    measure_normalisation,
    raster_max_pixel_value,
    survey_rasters,
    tile_loader,
)
from .nets.imagenet import LITE_ARCHITECTURES, create_lite, imagenet_weights
from .nets.pretrained import PRETRAIN_KEY, STATE_KEY, load_pretrain_file, read_pretrain_file
from .tasks.self_supervised import INITS, LIGHTLY_VERSION, METHODS, NO_INIT, SelfSupervisedTask

PROVENANCE_VERSION = 1
MIN_TILE = 32  # the encoder downsamples by 32
MAX_RECORDED_PATHS = 1000  # the provenance travels into exported specs: keep it bounded
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


class PretrainError(RsdlError):
    """A pretraining run that could not produce a valid encoder file."""


@dataclass(frozen=True)
class PretrainResult:
    """A finished run: the file (written by the first process only under DDP) and its provenance."""

    path: Path
    provenance: dict[str, Any]
    written: bool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training pretrain",
        description="Self-supervised pretraining (BYOL or SimCLR, lightly's heads and losses) of a timm "
        "EfficientNet-Lite encoder on random tiles of unlabelled rasters. The encoder file it writes "
        "loads into a fit as weights: FILE, with backbone: tf_efficientnet_lite0 (classifiers) or "
        "encoder: tu-tf_efficientnet_lite0 (U-Nets).",
    )
    parser.add_argument(
        "rasters",
        nargs="+",
        help="rasters or glob patterns (quote them: 'tiles/*.tif', 'scenes/**/*.tif' for subfolders); every "
        "raster needs the band count of the first and must be at least one tile wide and high",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="the encoder file to write, e.g. runs/ssl/encoder.pt (its folder is created when missing; "
        "an existing file is replaced only by a complete one)",
    )
    parser.add_argument(
        "--backbone",
        choices=LITE_ARCHITECTURES,
        default=LITE_ARCHITECTURES[0],
        help=f"timm EfficientNet-Lite to pretrain (default {LITE_ARCHITECTURES[0]}); fine-tune it with the "
        "same backbone, or the U-Net encoder tu-<backbone>",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=METHODS[0],
        help="byol (default: no negative pairs, learns with small CPU batches) or simclr (contrastive: "
        "the batch's other tiles are its negatives, wants large batches)",
    )
    parser.add_argument(
        "--init",
        choices=INITS,
        default=NO_INIT,
        help="start from scratch (none, default) or from the bundled ImageNet weights of the backbone "
        "(imagenet-efficientnet-lite0 for tf_efficientnet_lite0, ...)",
    )
    parser.add_argument(
        "--tile-size", type=int, default=128, help=f"tile side in pixels, at least {MIN_TILE} (default 128)"
    )
    parser.add_argument(
        "--tiles-per-epoch",
        type=int,
        default=2048,
        help="random tiles drawn per epoch, at least --batch-size (default 2048)",
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs to train (default 10)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="tiles per batch per device, at least 2 (default 32)"
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="AdamW learning rate, decayed along a cosine to 1%% of it (default 0.001)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=2,
        help="DataLoader worker processes reading and augmenting tiles (default 2; 0 reads in the main "
        "process)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="random seed of tiles, views and weights (default 42)"
    )
    parser.add_argument(
        "--accelerator",
        default="auto",
        help="Lightning accelerator: auto (default: a GPU when there is one), cpu, gpu, mps",
    )
    parser.add_argument(
        "--devices",
        default="1",
        help="devices to train on: a number (default 1) or auto (every GPU, with DDP)",
    )
    parser.add_argument(
        "--fast-dev-run",
        action="store_true",
        help="one batch only, to check the inputs and the setup (the file is written all the same)",
    )
    return parser


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse impossible settings through argparse (exit 2, the option named)."""
    if args.tile_size < MIN_TILE:
        parser.error(
            f"--tile-size must be at least {MIN_TILE} px (the encoder downsamples by 32), "
            f"got {args.tile_size}."
        )
    if args.batch_size < 2:
        parser.error(f"--batch-size must be at least 2 (BatchNorm needs two tiles), got {args.batch_size}.")
    if args.tiles_per_epoch < args.batch_size:
        parser.error(
            f"--tiles-per-epoch ({args.tiles_per_epoch}) must be at least --batch-size ({args.batch_size}): "
            "an epoch is made of whole batches."
        )
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}.")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr:g}.")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be 0 or more, got {args.num_workers}.")
    if args.init != NO_INIT and imagenet_weights(args.init).architecture != args.backbone:
        parser.error(
            f"--init {args.init} fits --backbone {imagenet_weights(args.init).architecture}, not "
            f"{args.backbone}: choose that backbone, or --init none."
        )


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _verify(path: Path, backbone: str, bands: int) -> None:
    """Read the file back as a fit will: weights_only, then a strict load into a fresh backbone."""
    try:
        pretrain = read_pretrain_file(path)
        if pretrain is None:
            raise ValueError("it holds no rsdl_pretrain entry")
        load_pretrain_file(create_lite(backbone, num_classes=0, in_chans=bands), pretrain, backbone)
    except Exception as error:  # any failure means: the file is not what a fit can load
        raise PretrainError(f"The encoder file did not verify: {public_path(str(error))}") from error


def _provenance(
    args: argparse.Namespace,
    paths: Sequence[str],
    bands: int,
    dtype: str,
    normalisation: dict[str, Any],
    task: SelfSupervisedTask,
    trainer: pl.Trainer,
    seconds: float,
) -> dict[str, Any]:
    absolute = [os.path.abspath(p) for p in paths]
    rasters = {
        "patterns": list(args.rasters),
        "paths": absolute[:MAX_RECORDED_PATHS],
        "count": len(absolute),
        "bands": bands,
        "dtype": dtype,
    }
    if len(absolute) > MAX_RECORDED_PATHS:
        rasters["paths_truncated"] = True
    provenance = {
        "version": PROVENANCE_VERSION,
        "method": args.method,
        "backbone": args.backbone,
        "init": args.init,
        "rasters": rasters,
        "tile_size": args.tile_size,
        "tiles_per_epoch": args.tiles_per_epoch,
        "epochs": len(task.epoch_losses),
        "steps": int(trainer.global_step),
        "tiles_seen": int(task.tiles_seen),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": float(task.hparams.weight_decay),
        "normalisation": normalisation,
        "epoch_losses": task.epoch_losses,
        "final_loss": task.epoch_losses[-1] if task.epoch_losses else None,
        "seconds": round(seconds, 1),
        "seed": args.seed,
        "fast_dev_run": bool(args.fast_dev_run),
        "precision": str(trainer.precision),
        "lightly_version": LIGHTLY_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return json.loads(json.dumps(provenance))  # plain JSON types: weights_only loads them, specs carry them


def pretrain(args: argparse.Namespace) -> PretrainResult | None:
    """Run a pretraining as ``main`` parsed it; None when interrupted (nothing written)."""
    start = time.monotonic()
    paths = find_rasters(args.rasters)
    sources = survey_rasters(paths, args.tile_size)
    reader = TileReader(sources, args.tile_size)
    scale = raster_max_pixel_value(sources)
    try:
        mean, std = measure_normalisation(reader, scale, seed=args.seed)
        normalisation = {"mean": mean, "std": std, "max_pixel_value": scale, "tiles": STATISTICS_TILES}
        pl.seed_everything(args.seed, verbose=False)
        bands = sources[0].bands
        task = SelfSupervisedTask(bands, args.backbone, args.method, args.init, args.lr)
        loader = tile_loader(
            UnlabelledTiles(reader, mean, std, scale),
            args.tiles_per_epoch,
            args.batch_size,
            args.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            accelerator=args.accelerator,
            devices=_devices(args.devices),
            precision=auto_precision(args.accelerator),
            logger=False,
            enable_checkpointing=False,
            fast_dev_run=args.fast_dev_run,
            gradient_clip_val=1.0,
            default_root_dir=args.output.parent,
        )
        previous_handler = signal.getsignal(signal.SIGINT)
        try:
            with warnings.catch_warnings():
                # --num-workers is the user's choice (0 on purpose on a busy machine).
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                trainer.fit(task, train_dataloaders=loader)
        except SystemExit:
            # Lightning ends a Ctrl-C with sys.exit(1) after its shutdown.
            if trainer.interrupted:
                return None
            raise
        finally:
            signal.signal(signal.SIGINT, previous_handler)  # Lightning ignores Ctrl-C from the first one on
    finally:
        reader.close()
    if trainer.interrupted:
        return None
    provenance = _provenance(
        args, paths, bands, sources[0].dtype, normalisation, task, trainer, time.monotonic() - start
    )
    if not trainer.is_global_zero:
        return PretrainResult(args.output, provenance, written=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.output, sidecars=()) as temp:
        torch.save({STATE_KEY: task.backbone_state_dict(), PRETRAIN_KEY: provenance}, temp)
        _verify(temp, args.backbone, bands)
    return PretrainResult(args.output, provenance, written=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training pretrain``: 0 when the encoder file was written, 1 on refused inputs,
    130 when interrupted."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    try:
        result = pretrain(args)
    except RsdlError as error:
        print(f"pretrain failed: {error}", file=sys.stderr)
        return 1
    if result is None:
        print(f"pretrain interrupted: '{args.output}' was not written.", file=sys.stderr)
        return INTERRUPTED
    if result.written:
        info = result.provenance
        loss = "n/a" if info["final_loss"] is None else f"{info['final_loss']:.4f}"
        print(
            f"pretrain: wrote {result.path}: {info['method']}, {info['backbone']} (init {info['init']}), "
            f"{info['rasters']['bands']} bands, {info['rasters']['count']} rasters; {info['steps']} steps, "
            f"{info['tiles_seen']} tiles of {info['tile_size']} px in {info['seconds']:.0f} s; final loss "
            f"{loss}.\nFine-tune it with weights: {result.path} and backbone: {info['backbone']} "
            f"(classifiers) or encoder: tu-{info['backbone']} (U-Nets)."
        )
    return 0
