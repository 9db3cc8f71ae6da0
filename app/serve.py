"""`serve`: start the Streamlit app on 127.0.0.1 over a runs root (what `aselect app` runs)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS_ENV = "ASELECT_RUNS"
DEMO_RUNS = REPO / "data" / "demo_runs"


def holds_runs(folder: Path) -> bool:
    """True when some sub-folder of `folder` is a run dir (has a config.json)."""
    return folder.is_dir() and any((d / "config.json").is_file() for d in folder.iterdir() if d.is_dir())


def resolve_runs_root(runs_root: Path | str | None = None) -> Path:
    """`runs_root`, else $ASELECT_RUNS, else ./runs when it holds runs, else the shipped data/demo_runs."""
    if runs_root is not None:
        return Path(runs_root).resolve()
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).resolve()
    return Path("runs").resolve() if holds_runs(Path("runs")) else DEMO_RUNS


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The `streamlit run` command line for the app."""
    return [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "Home.py"), "--server.address", host,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal"]  # no Deploy button: this is a local workbench


def serve(runs_root: Path | None, port: int, host: str = "127.0.0.1") -> int:
    """Serve the app until interrupted; the runs root reaches the pages through $ASELECT_RUNS. Returns the exit code."""
    root = resolve_runs_root(runs_root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs root {root} is not a folder")
    env = {**os.environ, RUNS_ENV: str(root)}
    print(f"serving runs under {root} at http://{host}:{port}", file=sys.stderr)
    try:
        return subprocess.call(command(port, host), env=env, cwd=REPO)
    except KeyboardInterrupt:
        return 0
