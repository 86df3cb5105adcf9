"""The tile stream (inference/tile_stream.py): order, batches, padding, nodata tiles, errors and cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rsdl_qgis_plugin.core.errors import CancelledError
from rsdl_qgis_plugin.core.tiling.plan import TilePlan, pad_tile
from rsdl_qgis_plugin.inference.tile_stream import TileStream


class ArrayReader:
    """Windows of an in-memory (bands, H, W) raster; NaN marks nodata. Records the reading thread."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.threads: set[str] = set()

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        self.threads.add(threading.current_thread().name)
        window = self.image[:, row : row + rows, col : col + cols]
        valid = ~np.isnan(window).any(axis=0)
        return np.nan_to_num(window), valid


def image_with_a_nodata_corner() -> np.ndarray:
    image = np.random.default_rng(0).uniform(0, 255, (2, 40, 52)).astype(np.float32)
    image[:, :20, :20] = np.nan  # the first tile of a 16 px plan holds no data at all
    return image


def test_batches_hold_batch_size_tiles_with_data_in_plan_order():
    image = image_with_a_nodata_corner()
    plan = TilePlan(52, 40, 16, 4)
    reader = ArrayReader(image)
    with TileStream(plan.tiles, 52, 40, lambda: reader, batch_size=3) as stream:
        batches = list(stream)
    tiles = [item for batch in batches for item in batch]
    assert [item.tile.index for item in tiles] == list(range(len(plan)))
    assert all(sum(item.data is not None for item in batch) == 3 for batch in batches[:-1])
    assert sum(item.data is not None for item in batches[-1]) <= 3
    assert reader.threads == {"rsdl-tile-reader"}  # read off the consumer's thread
    empty = [item for item in tiles if item.data is None]
    assert empty and all(item.valid_fraction == 0.0 for item in empty)
    filled = np.nan_to_num(image)
    for item in tiles:
        if item.data is None:
            continue
        row, col, rows, cols = item.tile.read_window(52, 40)
        expected = pad_tile(filled[:, row : row + rows, col : col + cols], item.tile.padding(52, 40))
        np.testing.assert_array_equal(item.data, expected)
        inside = ~np.isnan(image[:, row : row + rows, col : col + cols]).any(axis=0)
        assert item.valid_fraction == pytest.approx(inside.mean())
        assert (item.valid is None) == bool(inside.all())


def test_keep_empty_reads_tiles_without_valid_pixels_too():
    plan = TilePlan(52, 40, 16, 4)
    reader = ArrayReader(image_with_a_nodata_corner())
    with TileStream(plan.tiles, 52, 40, lambda: reader, batch_size=64, keep_empty=True) as stream:
        (batch,) = list(stream)
    assert all(item.data is not None for item in batch)
    assert batch[0].valid_fraction == 0.0 and not batch[0].valid.any()


def test_a_reader_error_reaches_the_consumer():
    class Failing:
        def read(self, *window):
            raise OSError("disk gone")

    plan = TilePlan(32, 32, 16, 0)
    with pytest.raises(OSError, match="disk gone"), TileStream(plan.tiles, 32, 32, Failing, 2) as stream:
        list(stream)


def test_a_cancel_stops_the_stream_at_the_next_batch():
    plan = TilePlan(200, 200, 16, 0)
    cancelled = threading.Event()
    reader = ArrayReader(np.ones((1, 200, 200), dtype=np.float32))
    seen = []
    stream = TileStream(plan.tiles, 200, 200, lambda: reader, 4, cancelled.is_set)
    with pytest.raises(CancelledError), stream:
        for batch in stream:
            seen.append(batch)
            cancelled.set()
    assert len(seen) == 1 and len(plan) > 4
