"""Section 1: every bad input through every algorithm it reaches (pytest-qgis), and a
representative subset through qgis_process. The table is tests/robustness/cases.py.

Every case: inputs byte-identical (and nothing new beside them), outputs complete or absent, no
temporary left; a refusal names the input and the way out, an acceptance passes its check.
"""

from __future__ import annotations

import re

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from tests.robustness.cases import CASES, IN_QGIS, QGIS_PROCESS, Accepted, Case, Refused
from tests.robustness.checks import (
    InputGuard,
    assert_nothing_left,
    assert_outputs_complete,
    qgis_process_message,
    qgis_process_value,
)


def _needs(case: Case, hostile) -> None:
    model = case.values.get("MODEL")
    if callable(model):
        try:
            model(hostile, None)
        except KeyError:
            pytest.skip("this system cannot make that model (no symlinks)")


def _assert_refusal(expect: Refused, message: str) -> None:
    assert expect.names in message, f"the message does not name {expect.names!r}: {message}"
    assert re.search(expect.fix, message, re.DOTALL), f"no way out ({expect.fix!r}) in: {message}"
    assert "Traceback" not in message, message


def _by_run(run: str) -> list:
    return [
        pytest.param(case, id=case.id + "-" + case.name.replace(" ", "_"))
        for case in CASES
        if run in case.runs
    ]


@pytest.mark.parametrize("case", _by_run(IN_QGIS))
def test_in_qgis(case: Case, hostile, run_algorithm, tmp_path):
    _needs(case, hostile)
    out = tmp_path / "out"
    out.mkdir()
    parameters = case.parameters(hostile, out)
    guard = InputGuard(hostile)
    feedback = QgsProcessingFeedback()
    if isinstance(case.expect, Refused):
        with pytest.raises(QgsProcessingException) as refusal:
            run_algorithm(case.algorithm, parameters, feedback)
        _assert_refusal(case.expect, str(refusal.value))
        assert_nothing_left(parameters, out)
    else:
        results = run_algorithm(case.algorithm, parameters, feedback)
        assert_outputs_complete(parameters, out)
        if isinstance(case.expect, Accepted) and case.expect.check is not None:
            case.expect.check(hostile, parameters, results, feedback.textLog())
    guard.assert_unchanged()


@pytest.mark.qgis_process
@pytest.mark.parametrize("case", _by_run(QGIS_PROCESS))
def test_through_qgis_process(case: Case, hostile, qgis_process, tmp_path):
    _needs(case, hostile)
    out = tmp_path / "out"
    out.mkdir()
    parameters = case.parameters(hostile, out)
    guard = InputGuard(hostile)
    answer = qgis_process.run_algorithm(
        case.algorithm, {key: qgis_process_value(value) for key, value in parameters.items()}, check=False
    )
    if isinstance(case.expect, Refused):
        assert answer.get("returncode", 0) != 0, answer
        _assert_refusal(case.expect, qgis_process_message(answer["stdout"], answer["stderr"]))
        assert_nothing_left(parameters, out)
    else:
        assert "results" in answer, answer
        assert_outputs_complete(parameters, out)
        if case.expect.check is not None:
            log = "\n".join(answer["log"].get("info", []) + answer["log"].get("warning", []))
            case.expect.check(hostile, parameters, answer["results"], log)
    guard.assert_unchanged()
