"""Files on disk, one way: atomic writes (temp file, fsync, rename), JSON read with a one-line error naming the
file, sha256 checksums and the file-plus-sidecar check behind every checkpoint, and the one `CheckpointError`.

A kill at any moment leaves either the old file or the new one, never half of it. Nothing here unpickles
anything.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


class CheckpointError(ValueError):
    """A missing, truncated, corrupt or unreadable checkpoint; the one-line message names the file and what was
    expected."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, then rename over (and fsync the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    """`obj` as indented, key-sorted JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    """`df` as a parquet file (without its index), atomically."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: Path, error: type[Exception] = ValueError) -> Any:
    """The JSON in `path`; `error("PATH: not valid JSON (why)")` for a malformed file (FileNotFoundError passes)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e.msg})") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sidecar_path(path: Path) -> Path:
    """`step_X.json` beside `step_X.safetensors`: written last, it records the file's sha256."""
    return Path(path).with_suffix(".json")


def verified_bytes(path: Path) -> tuple[bytes, dict[str, Any]]:
    """(the file's bytes, its sidecar) when both exist and the sha256 matches; CheckpointError otherwise."""
    path, sidecar_file = Path(path), sidecar_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not sidecar_file.is_file():
        raise CheckpointError(f"{path}: no sidecar {sidecar_file.name} (the write did not finish)")
    sidecar = read_json(sidecar_file, CheckpointError)
    data = path.read_bytes()
    if sha256_hex(data) != sidecar.get("sha256"):
        raise CheckpointError(f"{path}: sha256 does not match its sidecar (truncated or corrupt)")
    return data, sidecar
