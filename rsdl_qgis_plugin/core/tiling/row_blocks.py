"""Row blocks: a raster cut into horizontal blocks of rows that run as separate tasks.

Pure Python. A block is (first, stop): whole-raster rows first..stop-1. ``TiledInference.run(rows=...)``
runs one block exactly as the whole-raster run gives its rows (see "Row ranges" in ``blending.py``),
so the blocks of :func:`row_blocks`, run anywhere and stitched in order, equal the whole run.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from ..errors import RsdlError

__all__ = ["check_row_range", "row_blocks"]


def check_row_range(rows: Sequence[int], height: int) -> tuple[int, int]:
    """``rows`` as (first, stop) whole-raster rows with 0 <= first < stop <= height, or RsdlError."""
    try:
        first, stop = (operator.index(value) for value in rows)
    except (TypeError, ValueError):
        raise RsdlError(
            f"The row range must be two whole numbers (first row, stop row), got {rows!r}."
        ) from None
    if not 0 <= first < stop <= height:
        raise RsdlError(
            f"The row range ({first}, {stop}) does not fit the raster: it needs "
            f"0 <= first row < stop row <= {height} (the raster height)."
        )
    return first, stop


def row_blocks(height: int, block_rows: int) -> list[tuple[int, int]]:
    """Consecutive (first, stop) row ranges of at most ``block_rows`` rows covering [0, height)."""
    if height < 1:
        raise RsdlError(f"The raster height must be at least 1 row, got {height}.")
    if block_rows < 1:
        raise RsdlError(f"A row block must hold at least 1 row, got {block_rows}.")
    return [(first, min(first + block_rows, height)) for first in range(0, height, block_rows)]
