"""Debian's own python3-onnxruntime as the model runtime: QGIS from apt, no pip packages at all.

Debian 13 packages onnxruntime (``apt install python3-onnxruntime``, 1.21 in trixie), an install
path with no pip and no PEP 668 override (docs/INSTALL.md). The QGIS 3.40 chroot of the test matrix
installs it; Debian 12 has no such package, so elsewhere this module skips with that reason. The
oracle is the same run with the pip onnxruntime of the venv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.build_plugin import stage
from scripts.qgis_process_runner import QgisProcess
from tests.e2e.system_python import system_module_file
from tests.rasterize_cases import read_band

pytestmark = pytest.mark.qgis_process
REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models/sample_scene_landcover/model.onnx"


@pytest.fixture(scope="module")
def debian_qgis(tmp_path_factory) -> QgisProcess:
    home = tmp_path_factory.mktemp("debian_home")
    location = system_module_file("onnxruntime", home)
    if location is None or not location.startswith("/usr/lib/python3/dist-packages/"):
        pytest.skip(
            "Debian's python3-onnxruntime is not installed (Debian 12 has none; the QGIS 3.40 "
            f"chroot of `make test` installs it); system onnxruntime: {location}"
        )
    qgis = QgisProcess(stage(tmp_path_factory.mktemp("debian_plugins")).parent, home)
    qgis.env["PYTHONPATH"] = ""  # QGIS's Python with Debian's packages only
    return qgis


def _segment(qgis: QgisProcess, scene: Path, folder: Path) -> dict:
    folder.mkdir()
    return qgis.run_algorithm(
        "rsdl:segment",
        {
            "INPUT": str(scene),
            "MODEL": str(MODEL),
            "OUTPUT": str(folder / "classes.tif"),
            "CONFIDENCE": str(folder / "confidence.tif"),
        },
    )


def test_segment_with_debian_onnxruntime_equals_pip_onnxruntime(
    debian_qgis, qgis_process, sample_scene, tmp_path
):
    scene = sample_scene / "scene.tif"
    debian = _segment(debian_qgis, scene, tmp_path / "debian")
    pip = _segment(qgis_process, scene, tmp_path / "pip")
    assert debian["results"]["TILES"] == pip["results"]["TILES"] > 0
    classes = read_band(tmp_path / "debian/classes.tif")
    expected = read_band(tmp_path / "pip/classes.tif")
    # Two onnxruntime releases may round a near-tie differently; measured: identical.
    assert (classes != expected).mean() <= 1e-4
    confidence = read_band(tmp_path / "debian/confidence.tif")
    assert np.abs(confidence - read_band(tmp_path / "pip/confidence.tif")).max() < 1e-4
