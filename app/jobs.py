"""Background jobs (training, analysis) that outlive a page rerun and never take the app down with them.

A job (`aselect train ...`, `aselect analyze ...`) runs under a small supervisor
(`python -m app.jobs supervise RUN KIND -- CMD...`) in its own session. In the run dir it keeps `job_KIND.json` (pid, command, start time; the supervisor adds the exit code at the end) and
`job_KIND.log` (the command's stdout and stderr: tqdm bars, tracebacks). Cancel sends SIGTERM, which the
supervisor forwards: the trainer saves a checkpoint and exits. Progress is the last tqdm percentage in the log.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.serve import REPO

PERCENT = re.compile(rb"(\d{1,3})%\|")


@dataclass(frozen=True)
class JobState:
    """What a page shows about a run's job of one kind."""

    kind: str
    running: bool
    returncode: int | None  # None while running, or when the supervisor itself died
    progress: float | None  # in [0, 1], from the log's last tqdm bar
    tail: str  # the log's last lines
    command: list[str]


def paths(run: Path, kind: str) -> tuple[Path, Path]:
    """(job_KIND.json, job_KIND.log) in the run dir."""
    return run / f"job_{kind}.json", run / f"job_{kind}.log"


def train_command(out: Path, data: str, model: str, policy: str, steps: int, batch_size: int,
                  image_size: int) -> list[str]:
    """`aselect train ...` for a new run dir `out`."""
    return [sys.executable, "-m", "app.cli", "train", "--data", data, "--model", model, "--policy", policy,
            "--steps", str(steps), "--batch-size", str(batch_size), "--image-size", str(image_size),
            "--out", str(out)]


def analyze_command(run: Path, timesteps: list[int], n_images: int) -> list[str]:
    """`aselect analyze` (analysis.pipeline.analyze_run) on `run` over `timesteps` with `n_images` probe images."""
    return [sys.executable, "-m", "app.cli", "analyze", str(run), "--timesteps", ",".join(map(str, timesteps)),
            "--n-images", str(n_images)]


def start(run: Path, kind: str, cmd: list[str]) -> None:
    """Launch `cmd` for `run` in the background (refused while a job of that kind runs there)."""
    if (state := status(run, kind)) and state.running:
        raise RuntimeError(f"a {kind} job is already running in {run}")
    run.mkdir(parents=True, exist_ok=True)
    meta, log = paths(run, kind)
    meta.unlink(missing_ok=True)
    with open(log, "wb") as out:
        subprocess.Popen([sys.executable, "-m", "app.jobs", "supervise", str(run), kind, "--", *cmd], cwd=REPO,
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(50):  # the supervisor writes its pid file first thing
        if meta.is_file():
            return
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """True when process `pid` runs (a zombie awaiting its parent's wait counts as ended)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def tail(log: Path, lines: int = 20, size: int = 16384) -> tuple[str, float | None]:
    """(last `lines` lines of the log with tqdm's carriage-return redraws collapsed, last tqdm fraction)."""
    if not log.is_file():
        return "", None
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - size))
        raw = f.read()
    found = PERCENT.findall(raw)
    text = [line.rsplit("\r", 1)[-1] for line in raw.decode(errors="replace").replace("\r\n", "\n").split("\n")]
    kept = [line for line in text if line.strip()][-lines:]
    return "\n".join(kept), (int(found[-1]) / 100 if found else None)


def status(run: Path, kind: str) -> JobState | None:
    """The state of the run's last job of `kind`, or None when it never had one."""
    meta, log = paths(run, kind)
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text())
    except json.JSONDecodeError:  # being rewritten this instant: report it as running
        info = {"pid": 0, "command": [], "running": True}
    running = info.get("running", False) or ("returncode" not in info and alive(info["pid"]))
    text, progress = tail(log)
    return JobState(kind, running, info.get("returncode"), progress, text, info.get("command", []))


def cancel(run: Path, kind: str) -> bool:
    """SIGTERM the job (the trainer saves and exits); False when none runs."""
    state = status(run, kind)
    if state is None or not state.running:
        return False
    os.kill(json.loads(paths(run, kind)[0].read_text())["pid"], signal.SIGTERM)
    return True


def supervise(run: Path, kind: str, cmd: list[str]) -> int:
    """Run `cmd`, forward SIGTERM/SIGINT to it, record its exit code in job_KIND.json."""
    meta, _ = paths(run, kind)
    info = {"pid": os.getpid(), "command": cmd, "started": time.time()}
    meta.write_text(json.dumps(info))
    child = subprocess.Popen(cmd, cwd=REPO)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda signum, frame: child.send_signal(signum))
    rc = child.wait()
    meta.write_text(json.dumps({**info, "returncode": rc, "ended": time.time()}))
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.jobs supervise", description=supervise.__doc__)
    p.add_argument("what", choices=["supervise"])
    p.add_argument("run", type=Path)
    p.add_argument("kind")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    return supervise(args.run, args.kind, args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd)


if __name__ == "__main__":
    sys.exit(main())
