"""The plugin shell loads in QGIS desktop: classFactory, provider registration, clean unload."""

from __future__ import annotations

import configparser

from qgis.core import QgsApplication

import rsdl_qgis_plugin


def test_plugin_registers_and_unloads_provider(qgis_iface, qgis_app):
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("rsdl")
    if existing is not None:  # another test's session fixture registered one
        registry.removeProvider(existing)
    plugin = rsdl_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()
    provider = registry.providerById("rsdl")
    assert provider is not None
    ids = {algorithm.id() for algorithm in provider.algorithms()}
    assert {"rsdl:rasterizelabels", "rsdl:exportchips"} <= ids
    plugin.unload()
    assert registry.providerById("rsdl") is None
    plugin.unload()  # a second unload is harmless


def test_every_parameter_has_help(qgis_app):
    from rsdl_qgis_plugin.processing_provider.provider import ALGORITHMS

    for algorithm_class in ALGORITHMS:
        algorithm = algorithm_class()
        algorithm.initAlgorithm()
        for parameter in algorithm.parameterDefinitions():
            assert len(parameter.help()) > 20, f"{algorithm.name()}.{parameter.name()} lacks help"
        assert parameter.name() in algorithm.shortHelpString()


def test_metadata_is_complete(repo_root):
    metadata = configparser.ConfigParser()
    metadata.read(repo_root / "metadata.txt")
    general = metadata["general"]
    assert general["hasProcessingProvider"] == "yes"
    assert general["qgisMinimumVersion"] == "3.22"
    # Unset, it defaults to 3.99 and QGIS 4 hides the plugin.
    assert general["qgisMaximumVersion"] == "4.99"
    for key in (
        "name",
        "description",
        "about",
        "version",
        "author",
        "email",
        "tags",
        "homepage",
        "tracker",
        "repository",
    ):
        assert general.get(key), key
