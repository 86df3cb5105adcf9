"""The tile stream: tiles read on a worker thread ahead of the model, handed out in batches, with cancel.

QGIS-free. Any task that runs a model tile by tile takes its tiles from here: the blended engine
(``engine.py``), tile classification, and tasks to come (object detection). Reading is I/O-bound,
so it runs ahead of the model, a bounded number of tiles deep; the reader is created on the worker
thread because QGIS providers belong to the thread that made them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..core.errors import CancelledError
from ..core.tiling.layouts import TileWindow
from ..core.tiling.plan import pad_tile

__all__ = ["PREFETCH_BATCHES", "TileData", "TileStream", "WindowReader"]

PREFETCH_BATCHES = 2  # batches read ahead of the model


class WindowReader(Protocol):
    """Reads windows of the processing grid: (bands, rows, cols) data and a (rows, cols) valid mask.

    Data may come in the raster's own type (e.g. uint8): it is converted to float32 once per
    batch, when normalised. It must be finite.
    """

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class TileData:
    """One tile, padded to its full size by reflection."""

    tile: TileWindow
    data: np.ndarray | None  # (bands, tile, tile); None when the tile holds no valid pixel
    valid: np.ndarray | None  # (tile, tile); None when every pixel is valid (or there is no data)
    valid_fraction: float  # of the tile's pixels inside the raster


class TileStream:
    """The tiles of ``tiles`` (in order) over a ``width`` x ``height`` grid, in batches of
    ``batch_size`` tiles with data; tiles without valid pixels ride along with no data (unless
    ``keep_empty``: then they are read as they are). Iterate it once, inside ``with``."""

    _DONE = object()

    def __init__(
        self,
        tiles: Iterable[TileWindow],
        width: int,
        height: int,
        reader_factory: Callable[[], WindowReader],
        batch_size: int,
        is_cancelled: Callable[[], bool] = lambda: False,
        keep_empty: bool = False,
    ) -> None:
        self.tiles = tiles
        self.width, self.height = width, height
        self.reader_factory = reader_factory
        self.batch_size = batch_size
        self.is_cancelled = is_cancelled
        self.keep_empty = keep_empty
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES * batch_size)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="rsdl-tile-reader", daemon=True)

    def __enter__(self) -> TileStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, reader: WindowReader, tile: TileWindow) -> TileData:
        data, valid = reader.read(*tile.read_window(self.width, self.height))
        fraction = float(valid.mean()) if valid.size else 0.0
        if fraction == 0.0 and not self.keep_empty:
            return TileData(tile, None, None, fraction)
        padding = tile.padding(self.width, self.height)
        # An all-valid tile needs no mask: blending then skips weighting by it (padding lies
        # outside the raster, which the blender never keeps).
        mask = None if fraction == 1.0 else np.pad(valid, padding, constant_values=False)
        return TileData(tile, pad_tile(data, padding), mask, fraction)

    def _work(self) -> None:
        try:
            reader = self.reader_factory()
            for tile in self.tiles:
                if not self._put(self._read(reader, tile)):
                    return
        except BaseException as error:  # handed to the consumer thread, which raises it
            self._error = error
        self._put(self._DONE)

    def _items(self) -> Iterator[TileData]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def __iter__(self) -> Iterator[list[TileData]]:
        """Batches in tile order; the last may be short (or empty). A cancel is raised as
        ``CancelledError`` when the consumer comes back for the next batch."""
        pending: list[TileData] = []
        with_data = 0
        for item in self._items():
            pending.append(item)
            with_data += item.data is not None
            if with_data >= self.batch_size:
                yield pending
                pending, with_data = [], 0
                if self.is_cancelled():
                    raise CancelledError()
        yield pending
        if self.is_cancelled():
            raise CancelledError()
