"""Startup script for QGIS desktop (``qgis --code desktop_session.py``), started by desktop_run.py.

It does what an analyst does: loads a raster, makes it the active layer, clicks "Run model on
active raster", picks the model in the file dialog that asks for it, fills OUTPUT in the algorithm
dialog that opens and runs it. It waits for the
background task to load the styled result, shows it on the map, takes a screenshot, saves the
project and quits QGIS. Settings come from the JSON file named by RSDL_DESKTOP_CONFIG; what
happened is written to its "status" file (and QGIS's message log to its "log" file), so a failure
reads clearly in the test.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from typing import Callable

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QMetaObject, QTimer
from qgis.PyQt.QtWidgets import QAction, QApplication, QFileDialog, QLineEdit
from qgis.utils import iface, plugins

with open(os.environ["RSDL_DESKTOP_CONFIG"], encoding="utf-8") as config_file:
    CONFIG = json.load(config_file)
STATUS = {"state": "started", "steps": []}
STARTED = time.monotonic()
_KEEP = []  # timers and connections that must outlive this script's module code


def log(text: str) -> None:
    with open(CONFIG["log"], "a", encoding="utf-8") as stream:
        stream.write(f"{time.monotonic() - STARTED:7.1f}s {text}\n")


def step(text: str) -> None:
    STATUS["steps"].append(text)
    log(text)


QgsApplication.messageLog().messageReceived.connect(lambda message, tag, level: log(f"[{tag}] {message}"))


def finish(state: str) -> None:
    if STATUS["state"] not in ("started", "running"):
        return  # already finished (the watchdog fired after success, or the reverse)
    STATUS["state"] = state
    try:
        iface.mainWindow().grab().save(CONFIG["screenshot"], "PNG")
        QgsProject.instance().write(CONFIG["project"])
    except Exception:
        STATUS["finish_error"] = traceback.format_exc()
    with open(CONFIG["status"], "w", encoding="utf-8") as stream:
        json.dump(STATUS, stream, indent=2)
    log(f"finished: {state}")
    QTimer.singleShot(200, lambda: QgsApplication.instance().exit(0))


def guarded(function: Callable[..., None]) -> Callable[..., None]:
    """Any exception ends the session with its traceback in the status file."""

    def run(*args: object) -> None:
        try:
            function(*args)
        except Exception:
            STATUS["error"] = traceback.format_exc()
            log(STATUS["error"])
            finish("error")

    return run


def result_layer() -> QgsRasterLayer | None:
    for layer in QgsProject.instance().mapLayers().values():
        if isinstance(layer, QgsRasterLayer) and layer.source() == CONFIG["output"]:
            return layer
    return None


@guarded
def start() -> None:
    STATUS["state"] = "running"
    window = iface.mainWindow()
    window.resize(*CONFIG["window"])
    layer = iface.addRasterLayer(CONFIG["raster"], "scene")
    if layer is None or not layer.isValid():
        raise RuntimeError(f"QGIS could not load {CONFIG['raster']}")
    iface.setActiveLayer(layer)
    step("raster loaded and active")
    action = window.findChild(QAction, "rsdlRunModelOnActiveRaster")
    if action is None:
        STATUS["plugins"] = sorted(plugins)
        raise RuntimeError("no action rsdlRunModelOnActiveRaster: the rsdl plugin did not start")
    QTimer.singleShot(500, lambda: _answer_file_dialog(20))
    action.trigger()  # returns once the file dialog is answered and the algorithm dialog is open
    dialog = plugins["rsdl_qgis_plugin"].run_model_action.dialog
    if dialog is None:
        raise RuntimeError("the action opened no dialog")
    step(f"dialog opened for {dialog.algorithm().id()}")
    STATUS["prefilled_input"] = str(dialog.mainWidget().wrappers["INPUT"].parameterValue())
    STATUS["prefilled_model"] = str(dialog.mainWidget().wrappers["MODEL"].parameterValue())
    dialog.setParameters({"INPUT": layer.id(), "MODEL": CONFIG["model"], "OUTPUT": CONFIG["output"]})
    dialog.runAlgorithm()
    step("algorithm started from the dialog")
    STATUS["tasks_after_run"] = QgsApplication.taskManager().count()
    _wait_for_result(dialog)


@guarded
def _answer_file_dialog(tries: int) -> None:
    """Pick the model in the modal file dialog the action opened (Qt's own dialog under Xvfb)."""
    dialog = QApplication.activeModalWidget()
    if not isinstance(dialog, QFileDialog):
        if tries <= 0:
            raise RuntimeError(f"the action showed no model file dialog (modal widget: {dialog!r})")
        QTimer.singleShot(250, lambda: _answer_file_dialog(tries - 1))
        return
    step("model file dialog answered")
    # Type the path into "File name" and accept, as Enter does (accept() is protected in PyQt;
    # selectFile waits for the folder listing, which loads asynchronously).
    dialog.findChild(QLineEdit, "fileNameEdit").setText(CONFIG["model"])
    QMetaObject.invokeMethod(dialog, "accept")


def _wait_for_result(dialog: object) -> None:
    timer = QTimer()
    _KEEP.append(timer)

    @guarded
    def poll() -> None:
        layer = result_layer()
        if layer is None:
            return
        timer.stop()
        step("result layer loaded")
        renderer = layer.renderer()
        STATUS["renderer"] = renderer.type()
        STATUS["classes"] = [entry.label for entry in getattr(renderer, "classes", list)()]
        layer.setOpacity(CONFIG.get("result_opacity", 1.0))  # < 1 shows the image under the classes
        dialog.close()
        tree = QgsProject.instance().layerTreeRoot()
        for node in tree.findLayers():
            node.setExpanded(node.layerId() == layer.id())  # the class legend, not the RGB bands
        canvas = iface.mapCanvas()
        canvas.setExtent(layer.extent())
        _KEEP.append(canvas.mapCanvasRefreshed.connect(lambda: QTimer.singleShot(1500, lambda: finish("ok"))))
        canvas.refresh()

    timer.timeout.connect(poll)
    timer.start(250)


QTimer.singleShot(CONFIG["timeout_ms"], lambda: finish("timeout"))
QTimer.singleShot(1000, start)  # once the main window is up and the event loop runs
log("startup script loaded")
