"""rsdl training package (PyTorch Lightning): datasets from rsdl chips, tasks, export to ONNX.

It may import ``rsdl_qgis_plugin.core`` (label rules, model spec) and never QGIS; nothing in the
plugin imports it. The training issue fills it in; today it holds only this contract.
"""
