"""Analyst messages of core/errors.py: failed file operations and the pip command for a missing package."""

from __future__ import annotations

import errno
import os
import sys
import sysconfig
from pathlib import Path

import pytest

from rsdl_qgis_plugin.core.errors import (
    DISK_FULL_ERRNOS,
    CancelledError,
    MissingDependencyError,
    RsdlError,
    os_error_message,
    pip_install_command,
)

# --- os_error_message ------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="/dev/full (always ENOSPC) is Linux's")
def test_a_real_full_disk_names_the_output_and_the_way_out():
    # /dev/full fails every write with ENOSPC, as a full disk does; such errors name no file.
    with pytest.raises(OSError) as caught, open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename is None
    message = os_error_message(caught.value, "/data/out/classes.tif")
    assert message.startswith(f"Writing '/data/out/classes.tif' failed: {os.strerror(errno.ENOSPC)}.")
    assert "free disk space" in message and "another disk" in message
    assert "No partial output was kept" in message


@pytest.mark.parametrize("code", sorted(DISK_FULL_ERRNOS))
def test_every_disk_full_errno_gets_the_disk_full_advice(code):
    error = OSError(code, os.strerror(code), "/data/out/big.tif")
    message = os_error_message(error)
    assert "'/data/out/big.tif'" in message and "free disk space" in message
    assert {errno.ENOSPC, errno.EFBIG, errno.EDQUOT} == DISK_FULL_ERRNOS


def test_permission_denied_names_the_path_and_asks_for_a_writable_folder():
    error = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/srv/readonly/out.tif")
    message = os_error_message(error)
    assert message == (
        f"{os.strerror(errno.EACCES)}: '/srv/readonly/out.tif'. "
        "Check the path, and that its folder exists and is writable."
    )
    assert "disk" not in message  # not the disk-full advice


def test_a_real_missing_folder_names_the_file_the_os_names(tmp_path):
    missing = tmp_path / "no_such_folder" / "out.tif"
    with pytest.raises(OSError) as caught:
        missing.open("wb")
    message = os_error_message(caught.value)
    assert f"'{missing}'" in message and os.strerror(errno.ENOENT) in message


def test_the_given_path_wins_over_the_errors_own_file_name():
    # The error names a temporary of ours; the analyst must read the output they chose.
    error = OSError(errno.EACCES, "Permission denied", "/out/.classes.rsdl-tmp-1a2b3c4d.tif")
    message = os_error_message(error, "/out/classes.tif")
    assert "'/out/classes.tif'" in message and "rsdl-tmp" not in message


def test_an_error_without_file_or_strerror_still_gives_its_reason_and_the_way_out():
    message = os_error_message(OSError("it broke"))
    assert message == "it broke. Check the path, and that its folder exists and is writable."


# --- exceptions ------------------------------------------------------------------------------


def test_cancel_says_nothing_was_written_and_is_an_rsdl_error():
    error = CancelledError()
    assert isinstance(error, RsdlError) and "no output was written" in str(error)


def test_missing_dependency_names_package_purpose_and_install_command():
    error = MissingDependencyError.for_package("onnxruntime", "Running ONNX models")
    text = str(error)
    assert text.startswith("Running ONNX models needs the Python package 'onnxruntime'")
    assert f"\n    {pip_install_command('onnxruntime')}\n" in text and text.endswith("restart QGIS.")


# --- pip_install_command ---------------------------------------------------------------------


def test_install_command_names_this_python_not_the_first_on_the_path(monkeypatch):
    # Embedded in qgis_process, sys.executable is whatever python3 the PATH finds first.
    monkeypatch.setattr(sys, "executable", "/home/user/.pyenv/shims/python3")
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    command = pip_install_command("onnxruntime")
    assert command.startswith(f'"{os.path.join(sys.exec_prefix, "bin", python)}" -m pip install ')


def test_install_command_for_an_externally_managed_python(monkeypatch, tmp_path):
    (tmp_path / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)  # not a venv
    assert pip_install_command("onnxruntime").endswith(
        " -m pip install --user --break-system-packages onnxruntime"
    )


def test_install_command_on_windows_names_the_osgeo4w_shell(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert "OSGeo4W Shell" in pip_install_command("onnxruntime")
