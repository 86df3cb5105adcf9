"""Report figures (core/reports/figures.py): PNGs that PIL decodes to the requested size, written
complete or absent, and matplotlib kept off QGIS's Qt."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import AtomicOutputs, leftover_temporaries
from rsdl_qgis_plugin.core.reports.figures import figure_png, new_figure, save_png

pytest.importorskip("matplotlib", reason="the figures are drawn with matplotlib (optional)")
Image = pytest.importorskip("PIL.Image", reason="PIL decodes the PNGs")

REPO = Path(__file__).resolve().parents[2]


def decoded_size(png: bytes | Path) -> tuple[int, int]:
    """Size of a PNG that PIL reads to the last byte (a truncated file fails here)."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def drawn_figure(width: float, height: float, dpi: int):
    figure = new_figure(width, height, dpi=dpi, purpose="A test figure")
    figure.add_subplot().plot([0, 1, 2], [2, 0, 1])
    return figure


@pytest.mark.parametrize(("width", "height", "dpi"), [(4.0, 3.0, 50), (2.5, 6.0, 120), (5.0, 5.0, 110)])
def test_png_bytes_and_file_decode_to_the_requested_size(tmp_path, width, height, dpi):
    figure = drawn_figure(width, height, dpi)
    expected = (round(width * dpi), round(height * dpi))
    assert decoded_size(figure_png(figure)) == expected
    path = save_png(figure, tmp_path / "figure.png")
    assert path == tmp_path / "figure.png"
    assert decoded_size(path) == expected
    assert leftover_temporaries(tmp_path) == []


def failing_savefig(figure):
    """A save that writes half a PNG and then finds the disk full."""
    whole = figure_png(figure)

    def savefig(target, format):
        Path(target).write_bytes(whole[: len(whole) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return savefig


def test_a_failed_save_leaves_no_file_and_no_temporary(tmp_path):
    figure = drawn_figure(3.0, 2.0, 50)
    figure.savefig = failing_savefig(figure)
    with pytest.raises(OSError) as caught:
        save_png(figure, tmp_path / "chart.png")
    assert caught.value.filename == str(tmp_path / "chart.png")  # the output is named
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_keeps_the_previous_png(tmp_path):
    path = save_png(drawn_figure(3.0, 2.0, 50), tmp_path / "chart.png")
    before = path.read_bytes()
    figure = drawn_figure(6.0, 4.0, 50)
    figure.savefig = failing_savefig(figure)
    with pytest.raises(OSError):
        save_png(figure, path)
    assert path.read_bytes() == before and decoded_size(path) == (150, 100)
    assert leftover_temporaries(tmp_path) == []


def test_in_a_group_the_png_appears_only_when_the_group_commits(tmp_path):
    final = tmp_path / "heatmap.png"
    with AtomicOutputs() as outputs:
        assert save_png(drawn_figure(2.0, 2.0, 40), final, outputs) == final
        assert not final.exists()
    assert decoded_size(final) == (80, 80)
    failed = tmp_path / "other.png"
    with pytest.raises(RuntimeError), AtomicOutputs() as outputs:
        save_png(drawn_figure(2.0, 2.0, 40), failed, outputs)
        raise RuntimeError("a later output of the group failed")
    assert not failed.exists() and leftover_temporaries(tmp_path) == []


def test_without_matplotlib_the_error_names_the_purpose_and_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(RsdlError, match=r"The class chart needs matplotlib.*pip install matplotlib"):
        new_figure(4, 3, purpose="The class chart")


def test_figures_use_agg_and_never_import_pyplot_or_qt(tmp_path):
    # A fresh interpreter told to use Qt (as a user's MPLBACKEND may): the figure code must still
    # draw with Agg, and import neither pyplot nor any Qt binding that would clash with QGIS's.
    script = (
        "import json, sys\n"
        "QT = {'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qgis'}\n"
        "from rsdl_qgis_plugin.core.reports.figures import new_figure, save_png\n"
        "figure = new_figure(2, 1, dpi=30)\n"
        "figure.add_subplot().bar(['a'], [1])\n"
        f"save_png(figure, {str(tmp_path / 'f.png')!r})\n"
        "import matplotlib\n"
        "print(json.dumps({'backend': matplotlib.get_backend().lower(), 'modules': sorted(m for m in "
        "sys.modules if m == 'matplotlib.pyplot' or m.split('.')[0] in QT)}))\n"
    )
    env = {**os.environ, "MPLBACKEND": "QtAgg", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"backend": "agg", "modules": []}
    assert decoded_size(tmp_path / "f.png") == (60, 30)
