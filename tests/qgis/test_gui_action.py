"""The "Run model on active raster" action, driven as an analyst would, with a real QgsTask."""

from __future__ import annotations

import pytest
from qgis.core import (
    QgsApplication,
    QgsLayerTreeModel,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsBrowserGuiModel, QgsLayerTreeView

from rsdl_qgis_plugin.gui.run_model_action import RunModelAction


@pytest.fixture()
def desktop_iface(qgis_iface, monkeypatch):
    """pytest-qgis's interface, with the real objects the Processing dialog asks the desktop for.

    pytest-qgis answers every method it does not implement with a MagicMock. QGIS 3.22's
    Processing never asks for ``iface.layerTreeView()``, QGIS 3.40's only calls methods on it
    (which a mock swallows), and QGIS 3.44's hands it to the typed C++ call
    ``QgsProcessingGuiUtils.addResultLayers``, which rightly refuses a mock (the result then
    never reached the project). So the interface gets what QGIS desktop has: a layer tree view
    over the project's layer tree.
    """
    browser_model = QgsBrowserGuiModel()
    tree_view = QgsLayerTreeView()  # owned by Python: deleted with the last reference below
    tree_view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), tree_view))
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser_model, raising=False)
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: tree_view, raising=False)
    return qgis_iface


def test_action_opens_prefilled_dialog_and_runs_in_background(
    desktop_iface, qtbot, rsdl_provider, sample_scene, test_models, tmp_path
):
    qgis_iface = desktop_iface
    layer = QgsRasterLayer(str(sample_scene / "scene.tif"), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    action = RunModelAction(qgis_iface)
    action.register()
    try:
        action.action.trigger()
        dialog = action.dialog
        assert dialog is not None and dialog.isVisible()
        assert dialog.algorithm().id() == "rsdl:segment"
        prefilled = dialog.mainWidget().wrappers["INPUT"].parameterValue()
        assert prefilled in (layer.id(), layer.source(), layer)

        output = tmp_path / "classes.tif"
        dialog.setParameters(
            {"INPUT": layer.id(), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)}
        )
        tasks_before = QgsApplication.taskManager().count()
        dialog.runAlgorithm()
        # The algorithm runs as a task in QGIS's task manager while the event loop keeps going.
        qtbot.waitUntil(
            lambda: QgsApplication.taskManager().count() > tasks_before or output.exists(), timeout=10000
        )

        def result_loaded() -> bool:
            return any(
                isinstance(other, QgsRasterLayer) and other.source() == str(output)
                for other in QgsProject.instance().mapLayers().values()
            )

        qtbot.waitUntil(result_loaded, timeout=60000)
        loaded = next(
            other for other in QgsProject.instance().mapLayers().values() if other.source() == str(output)
        )
        assert isinstance(loaded.renderer(), QgsPalettedRasterRenderer)
        # The result is placed in the Layers panel, as in QGIS desktop.
        assert QgsProject.instance().layerTreeRoot().findLayer(loaded.id()) is not None
        assert [c.label for c in loaded.renderer().classes()] == ["background", "building", "water"]
        dialog.close()
    finally:
        action.unregister()
        QgsProject.instance().removeAllMapLayers()


def test_action_warns_without_a_raster(qgis_iface, rsdl_provider, monkeypatch):
    monkeypatch.setattr(qgis_iface, "activeLayer", lambda: None)
    action = RunModelAction(qgis_iface)
    action.register()
    try:
        action.run()
        assert action.dialog is None
    finally:
        action.unregister()
