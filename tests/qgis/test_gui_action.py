"""The "Run model on active raster" action, driven as an analyst would, with a real QgsTask."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsLayerTreeModel,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.gui import QgsBrowserGuiModel, QgsLayerTreeView

from rsdl_qgis_plugin.gui import run_model_action
from rsdl_qgis_plugin.gui.run_model_action import LAST_FOLDER_SETTING, RunModelAction


@pytest.fixture()
def file_dialog(monkeypatch):
    """QFileDialog.getOpenFileName answering the files in ``answers`` in turn; ``calls`` records
    the folder each call started in."""

    class FileDialog:
        def __init__(self) -> None:
            self.answers: list[str] = []
            self.calls: list[str] = []

        def getOpenFileName(self, parent, caption, folder, filters):  # Qt's static method's name
            self.calls.append(folder)
            return self.answers.pop(0), filters.split(";;")[0]

    saved = QgsSettings().value(LAST_FOLDER_SETTING)
    QgsSettings().remove(LAST_FOLDER_SETTING)
    dialog = FileDialog()
    monkeypatch.setattr(run_model_action, "QFileDialog", dialog)
    yield dialog
    if saved is None:
        QgsSettings().remove(LAST_FOLDER_SETTING)
    else:
        QgsSettings().setValue(LAST_FOLDER_SETTING, saved)


@pytest.fixture()
def opened_dialogs(monkeypatch):
    """processing.createAlgorithmDialog replaced: records (algorithm id, parameters)."""
    import processing

    opened = []

    class Dialog:
        def show(self) -> None:
            opened[-1] += ("shown",)

    def create(algorithm, parameters):
        opened.append((algorithm, dict(parameters)))
        return Dialog()

    monkeypatch.setattr(processing, "createAlgorithmDialog", create)
    return opened


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
    desktop_iface, qtbot, rsdl_provider, sample_scene, test_models, tmp_path, file_dialog
):
    qgis_iface = desktop_iface
    layer = QgsRasterLayer(str(sample_scene / "scene.tif"), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    file_dialog.answers = [str(test_models["fcn_seg.onnx"])]
    action = RunModelAction(qgis_iface)
    action.register()
    try:
        action.action.trigger()
        dialog = action.dialog
        assert dialog is not None and dialog.isVisible()
        assert dialog.algorithm().id() == "rsdl:segment"
        prefilled = dialog.mainWidget().wrappers["INPUT"].parameterValue()
        assert prefilled in (layer.id(), layer.source(), layer)
        assert dialog.mainWidget().wrappers["MODEL"].parameterValue() == str(test_models["fcn_seg.onnx"])

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


def relabelled(source: Path, target: Path, model_type: str) -> Path:
    """A copy of ``source`` whose metadata declares ``model_type`` (nothing else)."""
    onnx = pytest.importorskip("onnx", reason="writes a model with another model_type")
    model = onnx.load(str(source))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"model_type": f'"{model_type}"'})
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize(
    ("model", "algorithm"),
    [
        ("fcn_seg.onnx", "rsdl:segment"),
        ("fcn_regressor.onnx", "rsdl:segment"),
        ("classifier.onnx", "rsdl:classifytiles"),
        ("Detector", "rsdl:detect"),
        ("InstanceSegmentor", "rsdl:detect"),
    ],
)
def test_action_opens_the_algorithm_of_the_models_type(
    model,
    algorithm,
    qgis_iface,
    rsdl_provider,
    sample_scene,
    test_models,
    tmp_path,
    file_dialog,
    opened_dialogs,
):
    layer = QgsRasterLayer(str(sample_scene / "scene.tif"), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    if model in test_models:
        path = test_models[model]
    else:
        path = relabelled(test_models["fcn_seg.onnx"], tmp_path / f"{model}.onnx", model)
    file_dialog.answers = [str(path)]
    action = RunModelAction(qgis_iface)
    try:
        action.run()
        assert opened_dialogs == [(algorithm, {"INPUT": layer.id(), "MODEL": str(path)}, "shown")]
        assert QgsSettings().value(LAST_FOLDER_SETTING) == str(path.parent)
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_the_file_dialog_starts_in_the_last_folder(
    qgis_iface, rsdl_provider, sample_scene, test_models, file_dialog, opened_dialogs
):
    layer = QgsRasterLayer(str(sample_scene / "scene.tif"), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    qgis_iface.messageBar().clear_messages()
    file_dialog.answers = [str(test_models["fcn_seg.onnx"]), ""]  # then the analyst cancels
    action = RunModelAction(qgis_iface)
    try:
        action.run()
        action.run()
        assert file_dialog.calls == ["", str(test_models["fcn_seg.onnx"].parent)]
        assert len(opened_dialogs) == 1  # cancelling opens nothing
        assert not qgis_iface.messageBar().get_messages(Qgis.Warning)
    finally:
        QgsProject.instance().removeAllMapLayers()


@pytest.mark.parametrize(
    ("name", "reason"), [("truncated.onnx", "onnxruntime cannot load"), ("evil.pth", "pickle")]
)
def test_an_unreadable_model_is_a_warning_naming_file_and_reason(
    name, reason, qgis_iface, rsdl_provider, sample_scene, test_models, file_dialog, opened_dialogs
):
    layer = QgsRasterLayer(str(sample_scene / "scene.tif"), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    qgis_iface.messageBar().clear_messages()
    file_dialog.answers = [str(test_models[name])]
    action = RunModelAction(qgis_iface)
    try:
        action.run()
        assert opened_dialogs == [] and action.dialog is None
        (warning,) = qgis_iface.messageBar().get_messages(Qgis.Warning)
        assert str(test_models[name]) in warning and reason in warning
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_an_algorithm_missing_from_processing_is_a_warning(
    qgis_iface, rsdl_provider, sample_scene, test_models, file_dialog, monkeypatch
):
    import processing

    layer = QgsRasterLayer(str(sample_scene / "scene.tif"), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    qgis_iface.messageBar().clear_messages()
    monkeypatch.setattr(processing, "createAlgorithmDialog", lambda algorithm, parameters: None)
    file_dialog.answers = [str(test_models["fcn_seg.onnx"])]
    action = RunModelAction(qgis_iface)
    try:
        action.run()
        assert action.dialog is None
        (warning,) = qgis_iface.messageBar().get_messages(Qgis.Warning)
        assert "rsdl:segment" in warning and "not installed" in warning
    finally:
        QgsProject.instance().removeAllMapLayers()
