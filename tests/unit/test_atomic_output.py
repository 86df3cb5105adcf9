"""Outputs are complete or absent."""

from __future__ import annotations

import errno

import pytest

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file, atomic_folder, leftover_temporaries


def test_atomic_file_renames_file_and_sidecars(tmp_path):
    final = tmp_path / "out.tif"
    (tmp_path / "out.tif.aux.xml").write_text("stale")
    with atomic_file(final) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".out")
        temp.write_text("data")
        temp.with_name(temp.name + ".aux.xml").write_text("new")
        assert not final.exists()
    assert final.read_text() == "data"
    assert (tmp_path / "out.tif.aux.xml").read_text() == "new"
    assert leftover_temporaries(tmp_path) == []


def test_atomic_file_keeps_the_old_file_on_error(tmp_path):
    final = tmp_path / "out.tif"
    final.write_text("old")
    with pytest.raises(ValueError), atomic_file(final) as temp:
        temp.write_text("half")
        raise ValueError("disk full")
    assert final.read_text() == "old"
    assert leftover_temporaries(tmp_path) == []


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(RsdlError, match="does not exist"), atomic_file(tmp_path / "nope" / "x.tif"):
        pass


def test_atomic_folder(tmp_path):
    final = tmp_path / "chips"
    with atomic_folder(final) as temp:
        (temp / "a.txt").write_text("a")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "a"
    with pytest.raises(RsdlError, match="not empty"), atomic_folder(final):
        pass
    with pytest.raises(KeyError), atomic_folder(tmp_path / "other") as temp:
        (temp / "b.txt").write_text("b")
        raise KeyError("cancel")
    assert not (tmp_path / "other").exists()
    assert leftover_temporaries(tmp_path) == []


@pytest.mark.parametrize("folder", [False, True])
def test_an_os_error_naming_no_file_names_the_output(tmp_path, folder):
    """A failed flush or close (a full disk) raises an OSError without a file name."""
    final = tmp_path / ("chips" if folder else "out.json")
    with pytest.raises(OSError) as caught, atomic_folder(final) if folder else atomic_file(final):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.filename == str(final)
    with pytest.raises(OSError) as caught, atomic_file(final.with_suffix(".tif")) as temp:
        raise OSError(errno.ENOSPC, "No space left on device", str(temp))
    assert caught.value.filename == str(temp)  # a named file stays named
    assert leftover_temporaries(tmp_path) == []
