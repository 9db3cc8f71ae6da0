"""aselect_core.io: atomic writes leave the old file or the new one, never a part; JSON and checksum errors are
one line naming the file."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from aselect_core import io


class Boom(Exception):
    pass


def test_atomic_writes_round_trip_and_leave_no_temp_files(tmp_path):
    io.atomic_write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"a": [1, 2], "b": 1}
    df = pd.DataFrame({"timestep": [0, 500], "layer": ["block.0", "block.1"]})
    io.atomic_write_parquet(tmp_path / "a" / "t.parquet", df)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "t.parquet"), df)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["t.parquet", "x.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.bin"
    io.atomic_write_bytes(path, b"old")

    def fail(*_):
        raise Boom("disk full")
    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(Boom):
        io.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_read_json_names_the_file_in_one_line(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyError, match=r"bad\.json: not valid JSON \(Expecting property name"):
        io.read_json(tmp_path / "bad.json", KeyError)
    with pytest.raises(FileNotFoundError):
        io.read_json(tmp_path / "missing.json")


def test_verified_bytes_checks_the_sidecar(tmp_path):
    path = tmp_path / "step_0000001.safetensors"
    with pytest.raises(io.CheckpointError, match="checkpoint file not found"):
        io.verified_bytes(path)
    path.write_bytes(b"tensors")
    with pytest.raises(io.CheckpointError, match="no sidecar step_0000001.json"):
        io.verified_bytes(path)
    io.sidecar_path(path).write_text("{")
    with pytest.raises(io.CheckpointError, match=r"step_0000001\.json: not valid JSON"):
        io.verified_bytes(path)
    io.atomic_write_json(io.sidecar_path(path), {"sha256": io.sha256_hex(b"tensors"), "step": 1})
    assert io.verified_bytes(path) == (b"tensors", {"sha256": io.sha256_hex(b"tensors"), "step": 1})
    path.write_bytes(b"tensor")  # truncated
    with pytest.raises(io.CheckpointError, match="sha256 does not match its sidecar"):
        io.verified_bytes(path)
