"""Imported at start-up by the Python that qgis_process embeds, when scripts/qgis_process_runner.py
puts this folder on its PYTHONPATH (the tests and the demo): the plugin's own DeprecationWarnings
are errors there too, as pyproject's pytest filters make them in-process. QGIS's qgis.utils resets
the filters with ``warnings.simplefilter("default")`` when it loads, so the rule is put back in
front after every ``simplefilter`` call. Never shipped; it shadows Debian's own sitecustomize
(apport's crash hook), which the runs do not need."""

import warnings

_simplefilter = warnings.simplefilter


def _plugin_deprecations_are_errors() -> None:
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("error", category=category, module="rsdl_qgis_plugin")
    # Matplotlib 3.6 (Debian 12's, QGIS 3.22) calls its own deprecated is_numlike when a chart gets
    # text categories, and attributes the warning to the caller's frame: matplotlib's, not ours.
    warnings.filterwarnings("default", message="The is_numlike function", module="rsdl_qgis_plugin")


def _simplefilter_keeping_plugin_errors(*args, **kwargs) -> None:
    _simplefilter(*args, **kwargs)
    _plugin_deprecations_are_errors()


warnings.simplefilter = _simplefilter_keeping_plugin_errors
_plugin_deprecations_are_errors()
