"""Random tile plans for the property tests of core/tiling/plan.py and core/tiling/blending.py."""

from __future__ import annotations

from hypothesis import strategies as st

from rsdl_qgis_plugin.core.tiling.plan import TilePlan


@st.composite
def plans(draw) -> TilePlan:
    tile_size = draw(st.integers(1, 96))
    overlap = draw(st.integers(0, tile_size - 1))
    step = tile_size - overlap
    # At most about 8 tiles per axis keeps each example fast.
    longest = min(300, 8 * step + overlap)
    return TilePlan(draw(st.integers(1, longest)), draw(st.integers(1, longest)), tile_size, overlap)
