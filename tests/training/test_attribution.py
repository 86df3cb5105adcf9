"""Attribution overlays (training/reports/attribution.py): PNGs that PIL decodes, also for all-zero or
non-finite attributions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.reports.attribution import write_attribution_png


@pytest.mark.parametrize("kind", ["signed_with_nan", "zero"])
def test_the_overlay_is_a_decodable_png(tmp_path, kind):
    rng = np.random.default_rng(0)
    picture = rng.random((24, 32, 3))
    attribution = np.zeros((24, 32))
    if kind == "signed_with_nan":
        attribution = np.where(rng.random((24, 32)) < 0.1, np.nan, rng.normal(size=(24, 32)))
    path = write_attribution_png(picture, attribution, tmp_path / f"{kind}.png", "title", (4, 6, 8, 8))
    assert path == tmp_path / f"{kind}.png"
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size[0] > 2 * image.size[1]  # three panels side by side
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # drawn, not blank
