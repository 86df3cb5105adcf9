"""The training cache (training/data/cache.py): keys that change with every input file and option,
JSON entries written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from training.data import cache
from training.data.cache import (
    cache_key,
    default_cache_dir,
    file_fingerprint,
    fingerprints,
    read_json,
    temporary_path,
    write_json,
)


def test_keys_are_stable_and_change_with_every_part(monkeypatch):
    key = cache_key("masks", [1, 2], {"b": 1, "a": 2})
    assert key == cache_key("masks", [1, 2], {"a": 2, "b": 1})  # dict order does not matter
    assert len(key) == 20 and int(key, 16) >= 0
    others = {cache_key("masks", [1, 3], {"b": 1, "a": 2}), cache_key("masks", [1, 2], {"b": 1, "a": 3})}
    assert key not in others and len(others) == 2
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    assert cache_key("masks", [1, 2], {"b": 1, "a": 2}) != key  # a new cache version drops old entries


def test_fingerprints_change_when_a_file_is_rewritten_or_touched(tmp_path, monkeypatch):
    path = tmp_path / "labels.geojson"
    path.write_text("{}", encoding="utf-8")
    first = file_fingerprint(path)
    assert first[0] == str(path.resolve())
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
    touched = file_fingerprint(path)
    path.write_text("{ }", encoding="utf-8")
    os.utime(path, ns=(status.st_atime_ns, touched[2]))  # same time, other size
    resized = file_fingerprint(path)
    assert len({cache_key(first), cache_key(touched), cache_key(resized)}) == 3
    # the same file named twice, or by a relative path, counts once
    monkeypatch.chdir(tmp_path)
    assert fingerprints([path, Path("labels.geojson")]) == [resized]


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RSDL_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("RSDL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rsdl" / "training"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "rsdl" / "training"


def test_json_entries_round_trip_and_leave_no_temporary_files(tmp_path):
    path = tmp_path / "entry" / "index.json"
    assert read_json(path) is None
    write_json(path, {"chips": [[0, 32, 64]], "name": "é"})
    assert read_json(path) == {"chips": [[0, 32, 64]], "name": "é"}
    assert [p.name for p in path.parent.iterdir()] == ["index.json"]
    assert temporary_path(path).parent == path.parent and temporary_path(path).name.startswith(".index.json.")
