"""matplotlib figures for reports: created without touching QGIS's Qt, saved complete or absent.

matplotlib is optional and imported only here, lazily, with the Agg backend (only the Figure API
is used, never pyplot, so no GUI backend and no global figure state).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ..errors import RsdlError
from ..files.atomic_output import AtomicOutputs, atomic_file

__all__ = [
    "figure_png",
    "new_figure",
    "save_png",
]


def new_figure(width: float, height: float, dpi: int = 120, purpose: str = "This figure") -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches; a clear error without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as error:
        raise RsdlError(
            f"{purpose} needs matplotlib, which this Python lacks; install it "
            "(python3 -m pip install matplotlib) or leave that output empty."
        ) from error
    return Figure(figsize=(width, height), dpi=dpi)


def figure_png(figure: Any) -> bytes:
    """The figure as PNG bytes (to embed in a report)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(figure: Any, path: str | os.PathLike, outputs: AtomicOutputs | None = None) -> Path:
    """Write the figure as a PNG at ``path``; with ``outputs`` it is renamed when that group commits."""
    with atomic_file(path, sidecars=(), outputs=outputs) as temp:
        figure.savefig(temp, format="png")
    return Path(path)
