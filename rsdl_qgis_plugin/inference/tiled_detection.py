"""Tiled object detection: tiles through the model, decoded into objects, merged across tile seams
and handed on as soon as they are final.

QGIS-free. The tiles come from ``tile_stream.TileStream`` over a ``core/tiling/plan.DetectionPlan``;
``detector.ObjectDecoder`` turns a batch's outputs into objects per tile and
``core/objects/seam_merge.SeamMerger`` merges them. An object is handed to ``write`` once no later
tile can overlap it, so memory holds a band of tile rows' objects, whatever the raster's area.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.contract.model_spec import ModelSpec
from ..core.errors import CancelledError, ModelError, RsdlError
from ..core.objects.detections import Detections
from ..core.objects.seam_merge import SeamMerger
from ..core.tiling.plan import DetectionPlan
from .backends import ModelBackend, out_of_memory_error
from .detector import MAX_CANDIDATES, ObjectDecoder
from .tile_stream import TileData, TileStream, WindowReader

__all__ = ["DetectionSettings", "TiledDetection", "drop_objects_on_nodata", "run_warnings"]


@dataclass(frozen=True)
class DetectionSettings:
    tile_size: int
    overlap: int
    batch_size: int
    confidence: float
    iou_threshold: float
    class_agnostic: bool = False


def drop_objects_on_nodata(detections: Detections, valid: np.ndarray | None) -> Detections:
    """The objects whose box centre lies on a valid pixel of the tile (``valid``: (tile, tile) bool;
    None = every pixel valid). Nodata and pixels outside the AREA polygons hold no objects."""
    if valid is None or not len(detections):
        return detections
    rows, cols = valid.shape
    centre_x = (detections.boxes[:, 0] + detections.boxes[:, 2]) / 2
    centre_y = (detections.boxes[:, 1] + detections.boxes[:, 3]) / 2
    col = np.clip(np.floor(centre_x).astype(np.int64), 0, cols - 1)
    row = np.clip(np.floor(centre_y).astype(np.int64), 0, rows - 1)
    return detections.select(valid[row, col])


def run_warnings(counts: dict[str, int], confidence: float, confidence_option: str) -> list[str]:
    """What a detection run's ``counts`` (``TiledDetection.run``) should warn the user of: dropped
    non-finite rows, capped candidate floods (``confidence_option`` names the tool's threshold
    option) and a raster that held no data. Each tool adds its own words for the last case."""
    warnings = []
    if counts["non_finite_rows"]:
        warnings.append(
            f"The model gave {counts['non_finite_rows']:,} candidate rows holding NaN or infinite "
            "values; they were dropped. Check the model's export (and its input normalisation)."
        )
    if counts["capped_tiles"]:
        warnings.append(
            f"{counts['capped_tiles']:,} tiles had more than {MAX_CANDIDATES:,} candidates at "
            f"confidence >= {confidence:g}; only the {MAX_CANDIDATES:,} highest-scoring of each went "
            f"into overlap suppression (as Ultralytics' max_nms). Raise {confidence_option} if objects "
            "are missing."
        )
    return warnings


class TiledDetection:
    """Runs a detector over a ``width`` x ``height`` grid and streams the merged objects."""

    def __init__(
        self,
        backend: ModelBackend,
        spec: ModelSpec,
        decoder: ObjectDecoder,
        settings: DetectionSettings,
        width: int,
        height: int,
    ) -> None:
        if settings.batch_size < 1:
            raise RsdlError(f"The batch size must be at least 1, got {settings.batch_size}.")
        self.backend = backend
        self.spec = spec
        self.decoder = decoder
        self.settings = settings
        self.plan = DetectionPlan(width, height, settings.tile_size, settings.overlap)

    def run(
        self,
        reader_factory: Callable[[], WindowReader],
        write: Callable[[Detections], None],
        progress: Callable[[float], None] = lambda _fraction: None,
        is_cancelled: Callable[[], bool] = lambda: False,
    ) -> dict[str, int]:
        """Detect over every tile; ``write`` receives final objects in raster pixels, in batches.

        Returns counts: tiles, run, skipped_nodata, batches, objects (written), non_finite_rows
        (candidate rows dropped for NaN or infinite values) and capped_tiles (tiles with more than
        ``detector.MAX_CANDIDATES`` candidates)."""
        settings = self.settings
        plan = self.plan
        merger = SeamMerger(plan.width, plan.height, settings.iou_threshold, settings.class_agnostic)
        counts = {"tiles": len(plan), "run": 0, "skipped_nodata": 0, "batches": 0, "objects": 0}
        non_finite, capped = self.decoder.non_finite_rows, self.decoder.capped_tiles

        def hand_on(objects: Detections) -> None:
            if len(objects):
                counts["objects"] += len(objects)
                write(objects)

        with TileStream(
            iter(plan), plan.width, plan.height, reader_factory, settings.batch_size, is_cancelled
        ) as stream:
            for batch in stream:
                self._detect(batch, merger, counts)
                if is_cancelled():  # the model call is the long part: stop before writing more
                    raise CancelledError()
                if batch:
                    following = batch[-1].tile.index + 1
                    if following < len(plan):
                        hand_on(merger.release(plan.window(following).row))
                    progress(following / len(plan))
            hand_on(merger.finish())
            progress(1.0)
        counts["non_finite_rows"] = self.decoder.non_finite_rows - non_finite
        counts["capped_tiles"] = self.decoder.capped_tiles - capped
        return counts

    def _detect(self, batch: list[TileData], merger: SeamMerger, counts: dict[str, int]) -> None:
        with_data = [entry for entry in batch if entry.data is not None]
        counts["skipped_nodata"] += len(batch) - len(with_data)
        if not with_data:
            return
        pixels = self.spec.normalize(np.stack([entry.data for entry in with_data]))
        # Which batch failed, for the error: the model's own message names the model.
        where = (
            f"(batch {counts['batches'] + 1}: tiles {with_data[0].tile.index + 1} to "
            f"{with_data[-1].tile.index + 1} of {len(self.plan)})"
        )
        settings = self.settings
        try:
            outputs = self.backend.run(pixels)
            per_tile = self.decoder.decode(
                outputs,
                settings.confidence,
                settings.iou_threshold,
                settings.class_agnostic,
                settings.tile_size,
            )
        except MemoryError as error:
            raise out_of_memory_error(
                self.backend, len(with_data), "tiles", self.settings.tile_size, error
            ) from None
        except ModelError as error:
            raise ModelError(f"{error} {where}") from None
        counts["batches"] += 1
        counts["run"] += len(with_data)
        for entry, detections in zip(with_data, per_tile):
            merger.add(entry.tile, drop_objects_on_nodata(detections, entry.valid))
