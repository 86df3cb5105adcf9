"""Fixtures shared by every suite: the repository root and the real data in ../shared/data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason where it is absent (CI has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (see DESIGN.md section 6)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def test_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny generated models of scripts/make_test_models.py (file name -> path)."""
    from scripts.make_test_models import write_test_models

    return write_test_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def sample_scene(tmp_path_factory) -> Path:
    """scripts/make_sample_scene.py at 512 px: scene.tif (RGB, UTM, 0.5 m) and labels.gpkg."""
    import subprocess

    folder = tmp_path_factory.mktemp("scene")
    subprocess.run(
        [sys.executable, str(REPO / "scripts/make_sample_scene.py"), str(folder), "--size", "512"],
        check=True,
        capture_output=True,
    )
    return folder
