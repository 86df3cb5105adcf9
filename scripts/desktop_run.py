"""Run QGIS desktop under Xvfb with the plugin installed from its zip into a fresh profile, and
drive "Run model on active raster" on a raster (scripts/desktop_session.py does the clicking).

    python scripts/desktop_run.py RASTER MODEL SCREENSHOT.png [--opacity 0.6]

The profile lives in a temporary folder (the user's QGIS profile is never touched). Used by
tests/desktop/test_desktop_gui.py, and to refresh docs/screenshot.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.build_plugin import PLUGIN_NAME, build_zip  # noqa: E402
from scripts.qgis_process_runner import embedded_python_environment  # noqa: E402

SESSION_SCRIPT = REPO / "scripts" / "desktop_session.py"
WINDOW = (1400, 900)
SESSION_TIMEOUT_S = 150


@dataclass
class DesktopRun:
    """What a desktop session left: its status, the files it wrote, and QGIS's log and output."""

    status: dict
    output: Path
    screenshot: Path
    project: Path
    diagnostics: str


def missing_programs() -> list[str]:
    return [program for program in ("xvfb-run", "qgis") if shutil.which(program) is None]


def profiles_with_plugin(root: Path) -> Path:
    """A profiles folder whose default profile has the plugin zip unzipped and enabled."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(build_zip(root / f"{PLUGIN_NAME}.zip")).extractall(plugins)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        f"[PythonPlugins]\n{PLUGIN_NAME}=true\n\n[qgis]\nshowTips=false\ncheckVersion=false\n",
        encoding="utf-8",
    )
    return root


def run_desktop_session(raster: Path, model: Path, work: Path, result_opacity: float = 1.0) -> DesktopRun:
    """Start QGIS, run the model on ``raster`` through the toolbar action, and quit."""
    work.mkdir(parents=True, exist_ok=True)
    profiles = profiles_with_plugin(work / "profiles_root")
    files = {name: work / name for name in ("status.json", "qgis.log", "screenshot.png", "project.qgs")}
    output = work / "classes.tif"
    config = {
        "raster": str(raster),
        "model": str(model),
        "output": str(output),
        "status": str(files["status.json"]),
        "log": str(files["qgis.log"]),
        "screenshot": str(files["screenshot.png"]),
        "project": str(files["project.qgs"]),
        "window": list(WINDOW),
        "timeout_ms": SESSION_TIMEOUT_S * 1000,
        "result_opacity": result_opacity,
    }
    config_path = work / "session.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    home = work / "home"
    home.mkdir(mode=0o700)
    environment = embedded_python_environment(
        shutil.which("qgis") or "/usr/bin/qgis",
        {key: value for key, value in os.environ.items() if key != "QT_QPA_PLATFORM"},
    )
    environment.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(home),
        RSDL_DESKTOP_CONFIG=str(config_path),
        # QGIS embeds the system Python: let it see this environment's packages (onnxruntime).
        PYTHONPATH=os.pathsep.join(
            p for p in (sysconfig.get_paths()["purelib"], os.environ.get("PYTHONPATH")) if p
        ),
    )
    command = [
        "xvfb-run",
        "-a",
        "-s",
        f"-screen 0 {WINDOW[0] + 200}x{WINDOW[1] + 100}x24",
        "qgis",
        "--nologo",
        "--noversioncheck",
        "--profiles-path",
        str(profiles),
        "--code",
        str(SESSION_SCRIPT),
    ]
    try:
        process = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=SESSION_TIMEOUT_S + 60
        )
        qgis_output = (
            f"QGIS exit code {process.returncode}\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        )
    except subprocess.TimeoutExpired as error:
        qgis_output = f"QGIS did not exit within {error.timeout} s"
    log = files["qgis.log"].read_text(encoding="utf-8") if files["qgis.log"].exists() else "(no session log)"
    status_file = files["status.json"]
    status = json.loads(status_file.read_text(encoding="utf-8")) if status_file.exists() else {}
    return DesktopRun(
        status, output, files["screenshot.png"], files["project.qgs"], f"session log:\n{log}\n{qgis_output}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("raster", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("screenshot", type=Path)
    parser.add_argument("--opacity", type=float, default=0.6, help="opacity of the class layer (0-1)")
    args = parser.parse_args()
    if missing_programs():
        sys.exit(f"Install {' and '.join(missing_programs())} first (make install).")
    with tempfile.TemporaryDirectory(prefix="rsdl-desktop-") as work:
        run = run_desktop_session(args.raster.resolve(), args.model.resolve(), Path(work), args.opacity)
        if run.status.get("state") != "ok":
            sys.exit(f"The desktop session failed: {json.dumps(run.status, indent=1)}\n{run.diagnostics}")
        shutil.copyfile(run.screenshot, args.screenshot)
    print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
