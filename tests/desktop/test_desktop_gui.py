"""QGIS desktop under Xvfb with the plugin installed from its zip into a fresh profile: "Run model
on active raster" on a loaded raster runs in the background and shows the styled result.

scripts/desktop_run.py starts QGIS; scripts/desktop_session.py (run by QGIS with --code) loads
the raster, triggers the action, picks the model in its file dialog, fills OUTPUT in the
algorithm dialog, runs it, waits for the task, takes the screenshot, saves the project and quits.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from osgeo import gdal

from scripts.desktop_run import DesktopRun, missing_programs, run_desktop_session

pytestmark = pytest.mark.desktop
# Colours of the test model's classes (scripts/make_test_models.py SEG_SPEC): on the map only
# when the result layer is drawn with its class style.
CLASS_COLOURS = {"building": (0xE3, 0x1A, 0x1C), "water": (0x1F, 0x78, 0xB4)}


@pytest.fixture(scope="module")
def desktop_run(tmp_path_factory, sample_scene, test_models) -> DesktopRun:
    if missing_programs():
        pytest.skip(f"{' and '.join(missing_programs())} not installed (make install adds them)")
    return run_desktop_session(
        sample_scene / "scene.tif", test_models["fcn_seg.onnx"], tmp_path_factory.mktemp("desktop")
    )


def test_action_runs_the_model_and_loads_the_styled_result(desktop_run, test_models):
    status = desktop_run.status
    details = f"{json.dumps(status, indent=1)}\n{desktop_run.diagnostics}"
    assert status.get("state") == "ok", f"the desktop session did not finish: {details}"
    assert "dialog opened for rsdl:segment" in status["steps"], details
    assert "model file dialog answered" in status["steps"], details
    assert status["prefilled_input"].startswith("scene"), "the action did not fill in the active raster"
    assert status["prefilled_model"] == str(test_models["fcn_seg.onnx"]), (
        "the action did not fill in the model"
    )
    assert desktop_run.output.exists() and desktop_run.output.with_suffix(".qml").exists()
    assert status["renderer"] == "paletted", details
    assert status["classes"] == ["background", "building", "water"]
    # The saved project holds the result layer with its paletted renderer.
    project = ElementTree.parse(desktop_run.project)
    renderers = {
        layer.findtext("datasource"): layer.find("pipe/rasterrenderer").get("type")
        for layer in project.iter("maplayer")
        if layer.get("type") == "raster"
    }
    assert renderers.get(f"./{desktop_run.output.name}") == "paletted", renderers


def test_screenshot_shows_the_styled_result(desktop_run):
    assert desktop_run.screenshot.exists(), desktop_run.diagnostics
    pixels = gdal.Open(str(desktop_run.screenshot)).ReadAsArray()  # (bands, rows, columns)
    assert pixels.shape[1] > 400 and pixels.shape[2] > 600
    assert float(pixels[:3].astype(np.float64).std()) > 10.0, "the screenshot is blank"
    rgb = pixels[:3].transpose(1, 2, 0)
    for name, colour in CLASS_COLOURS.items():
        count = int(np.all(rgb == np.array(colour, dtype=rgb.dtype), axis=-1).sum())
        assert count > 500, f"the map shows no {name} pixels in the class colour {colour}"
