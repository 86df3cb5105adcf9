"""The tiled inference engine: stream a raster through a model, tile by tile, and blend.

QGIS-free. The tile stream (``tile_stream.py``) reads tiles ahead while the model runs batches;
blended rows are handed to the sinks as soon as no later tile touches them, so memory is bounded
by tile size x raster width, never by raster height.

Output heads are interpreted here (see ``HeadLayout``): [B,C,H,W], [B,H,W] (one channel), and
outputs smaller than the tile (a valid-convolution net, e.g. 512 -> 484) taken as the tile's
centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..core.contract.model_spec import ModelSpec
from ..core.contract.model_types import role_of
from ..core.errors import ModelError, RsdlError
from ..core.tiling.blending import BlendMode, StreamingBlender
from ..core.tiling.plan import TilePlan
from ..core.tiling.row_blocks import check_row_range
from .backends import ModelBackend, out_of_memory_error
from .probabilities import in_unit_range, softmax
from .tile_stream import TileData, TileStream, WindowReader

__all__ = [
    "HeadLayout",
    "InferenceSettings",
    "RowSink",
    "TiledInference",
]


class RowSink(Protocol):
    """Receives blended rows of one output head: (channels, rows, width) float32, NaN = no data."""

    def write_rows(self, first_row: int, values: np.ndarray) -> None: ...


@dataclass(frozen=True)
class InferenceSettings:
    tile_size: int
    overlap: int
    batch_size: int = 4
    blend_mode: BlendMode = BlendMode.PYRAMID


@dataclass(frozen=True)
class HeadLayout:
    """How one output head maps onto a tile: channels, and the margin it lacks on each side."""

    channels: int
    margin: int  # 0 when the head's output covers the whole tile

    @classmethod
    def from_output(
        cls, output: np.ndarray, tile_size: int, head: int, model: str = "the model"
    ) -> HeadLayout:
        if output.ndim == 3:  # [B, H, W]: one channel
            output = output[:, None]
        if output.ndim != 4:
            raise ModelError(
                f"Output {head + 1} of {model} has shape {list(output.shape)}; a segmentation or "
                "regression model must output [batch, channels, height, width] or [batch, height, "
                "width]. For one value per tile use rsdl:classifytiles."
            )
        height, width = output.shape[2:]
        if height != width or height > tile_size or (tile_size - height) % 2:
            raise ModelError(
                f"Output {head + 1} of {model} is {height} x {width} pixels for a {tile_size} x "
                f"{tile_size} tile; only outputs of the tile's size or a centred crop of it are "
                "supported. Export the model with outputs at its input size."
            )
        return cls(channels=output.shape[1], margin=(tile_size - height) // 2)

    def to_tile(self, output: np.ndarray, tile_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """One item's output as (channels, tile, tile) values, and the part it covers."""
        values = output if output.ndim == 3 else output[None]
        if not self.margin:
            return values.astype(np.float32, copy=False), None
        full = np.zeros((self.channels, tile_size, tile_size), dtype=np.float32)
        inner = slice(self.margin, tile_size - self.margin)
        full[:, inner, inner] = values
        covered = np.zeros((tile_size, tile_size), dtype=bool)
        covered[inner, inner] = True
        return full, covered


def _as_probabilities(values: np.ndarray) -> np.ndarray:
    """Softmax over channels for a batch of logits; probabilities pass unchanged."""
    if values.shape[1] < 2 or in_unit_range(values):
        return values
    return softmax(values)


class TiledInference:
    """Runs a model over a raster grid and streams blended rows to one sink per output head."""

    def __init__(
        self,
        backend: ModelBackend,
        spec: ModelSpec,
        bands: tuple[int, ...],
        settings: InferenceSettings,
        width: int,
        height: int,
    ) -> None:
        if settings.batch_size < 1:
            raise RsdlError(f"The batch size must be at least 1, got {settings.batch_size}.")
        self.backend = backend
        self.spec = spec
        self.bands = bands
        self.settings = settings
        self.plan = TilePlan(width, height, settings.tile_size, settings.overlap)
        self.heads = self._probe_heads()
        role = role_of(spec.model_type)
        self.probabilities = role is not None and role.class_scores

    def _probe(self, size: int) -> list[np.ndarray]:
        return self.backend.run(np.zeros((1, len(self.bands), size, size), dtype=np.float32))

    def _probe_heads(self) -> list[HeadLayout]:
        """One forward pass on a blank tile: validates the model and learns each head's layout.

        An output smaller than the tile is read as its centred crop (a valid-convolution net
        loses a fixed margin). A downsampling net's output is smaller too, but it scales with
        the tile: where the input size is free, a second pass at twice the size tells them apart.
        """
        size = self.settings.tile_size
        path = getattr(self.backend, "path", "")
        model = f"the model '{Path(path).name}'" if path else "the model"
        heads = [
            HeadLayout.from_output(output, size, head, model) for head, output in enumerate(self._probe(size))
        ]
        if not any(layout.margin for layout in heads) or None not in getattr(
            self.backend, "input_size", (None, None)
        ):
            return heads
        try:
            larger = self._probe(2 * size)
        except ModelError:  # the net only runs at some sizes: keep the centred-crop reading
            return heads
        for head, (layout, output) in enumerate(zip(heads, larger)):
            if layout.margin and output.shape[-1] != 2 * size - 2 * layout.margin:
                raise ModelError(
                    f"Output {head + 1} of {model} is {size - 2 * layout.margin} pixels wide for a "
                    f"{size} pixel tile and {output.shape[-1]} for a {2 * size} pixel tile: it scales "
                    "with the tile (a downsampled output), which rsdl cannot place on the raster. "
                    "Export the model with outputs at its input size (upsample the head)."
                )
        return heads

    def run(
        self,
        reader_factory: Callable[[], WindowReader],
        sinks: list[RowSink],
        progress: Callable[[float], None] = lambda _fraction: None,
        is_cancelled: Callable[[], bool] = lambda: False,
        rows: tuple[int, int] | None = None,
    ) -> dict[str, int]:
        """Process every tile; returns counts (tiles run, tiles skipped as nodata, batches).

        ``rows=(first, stop)`` (whole-raster rows) runs one horizontal block: only the tiles that
        add to those rows in the whole-raster blend, and the sinks get rows first..stop-1 alone
        (``first_row`` in whole-raster rows), bitwise as the whole run gives them when the model's
        output for a tile does not depend on the other tiles of its batch. Blocks from
        ``row_blocks`` stitch back to the whole run. Counts and progress cover the block's tiles.
        """
        if len(sinks) != len(self.heads):
            raise RsdlError(f"The model has {len(self.heads)} outputs but {len(sinks)} sinks were given.")
        first, stop = (0, self.plan.height) if rows is None else check_row_range(rows, self.plan.height)
        mode = BlendMode(self.settings.blend_mode)
        tiles = self.plan.tiles_touching_rows(first, stop, centre_crop=mode is BlendMode.CENTRE_CROP)
        blenders = [StreamingBlender(self.plan, head.channels, mode, (first, stop)) for head in self.heads]
        counts = {"tiles": len(tiles), "run": 0, "skipped_nodata": 0, "batches": 0}
        width, height = self.plan.width, self.plan.height
        batch_size = self.settings.batch_size
        first_index = tiles[0].index
        with TileStream(tiles, width, height, reader_factory, batch_size, is_cancelled) as stream:
            for batch in stream:
                self._flush(batch, blenders, sinks, counts)
                progress((batch[-1].tile.index - first_index) / len(tiles) if batch else 1.0)
            for blender, sink in zip(blenders, sinks):
                for first_row, values in blender.finish():
                    sink.write_rows(first_row, values)
            progress(1.0)
        return counts

    def _flush(
        self,
        pending: list[TileData],
        blenders: list[StreamingBlender],
        sinks: list[RowSink],
        counts: dict[str, int],
    ) -> None:
        """Run the model on the pending tiles, then add or skip them in plan order."""
        with_data = [entry for entry in pending if entry.data is not None]
        outputs: list[np.ndarray] = []
        if with_data:
            batch = self.spec.normalize(np.stack([entry.data for entry in with_data]))
            try:
                outputs = self.backend.run(batch)
            except MemoryError as error:
                raise out_of_memory_error(
                    self.backend, len(with_data), "tiles", self.settings.tile_size, error
                ) from None
            counts["batches"] += 1
            counts["run"] += len(with_data)
            if self.probabilities:
                outputs = [
                    _as_probabilities(output if output.ndim == 4 else output[:, None]) for output in outputs
                ]
        position = 0
        for entry in pending:
            if entry.data is None:
                counts["skipped_nodata"] += 1
                for blender in blenders:
                    blender.skip(entry.tile)
                continue
            for head, (layout, blender) in enumerate(zip(self.heads, blenders)):
                values, covered = layout.to_tile(outputs[head][position], self.settings.tile_size)
                valid = entry.valid
                if covered is not None:
                    valid = covered if valid is None else valid & covered
                blender.add(entry.tile, values, valid)
            position += 1
        for blender, sink in zip(blenders, sinks):
            for first_row, values in blender.pop_ready():
                sink.write_rows(first_row, values)
