"""The `aselect` command line: every subcommand's --help, one-line errors with exit code 2, and a real
train → analyze → select round on a tiny run."""
from __future__ import annotations

import argparse

import pytest

from aselect_core.train import RunDir
from app.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: aselect" in capsys.readouterr().out


def test_option_help_names_every_registered_option():
    from dataclasses import fields

    from analysis.registry import ANALYSES
    from analysis.selection import METHODS
    from app.cli import build_parser

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    help_of = {name: next(a.help for a in subs[name]._actions if a.dest == "option") for name in ("analyze", "select")}
    for registry, commands in ((METHODS, ("analyze", "select")), (ANALYSES, ("analyze",))):
        for name, entry in registry.items():
            declared = f"{name}: {', '.join(f.name for f in fields(entry.options))}"
            assert all(declared in help_of[c] for c in commands), (declared, commands)


def test_datasets_lists_embedded_data(capsys):
    assert main(["datasets", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "mnist5k", "lfw", "textures", "shapes"):
        assert f"\n{name}," in out
    assert "digits,1438,359,1,8,8,10" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "nope", "--out", "{tmp}/r"], "aselect train: error: dataset 'nope': unknown name"),
    (["train", "--steps", "0", "--out", "{tmp}/r"], "aselect train: error: config field 'steps': expected a positive integer"),
    (["train", "--policy", "nope", "--data", "digits", "--image-size", "8", "--out", "{tmp}/r"],
     "aselect train: error: policy: expected one of"),
    (["train", "--policy-arg", "k", "--out", "{tmp}/r"], "aselect train: error: --policy-arg: expected KEY=VALUE"),
    (["analyze", "{tmp}/missing"], "aselect analyze: error:"),
])
def test_bad_input_gives_one_line_error(argv, message, capsys, tmp_path):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()  # a refused run leaves nothing behind


def test_train_analyze_select_round(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--model", "DiT-T/4", "--image-size", "8", "--batch-size", "16",
                 "--steps", "6", "--checkpoint-every", "6", "--policy", "uniform-subset", "--policy-arg", "k=4",
                 "--out", str(out), "--no-progress"]) == 0
    assert RunDir(out).config().policy_kwargs == {"k": 4}
    assert main(["analyze", str(out), "--timesteps", "0,500,900", "--layers", "0,5", "--n-images", "120"]) == 0
    assert {"probe", "hfr", "selection"} <= set(line.split()[0] for line in capsys.readouterr().out.splitlines())
    assert (out / "analysis" / "probe.parquet").is_file()
    assert main(["select", str(out), "--method", "hfr", "oracle", "--timesteps", "0,500,900", "--layer", "5",
                 "--n-images", "120"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["method", "timestep", "layer"]
    assert "hfr" in table and "oracle" in table
    assert main(["compare", str(out), str(tmp_path / "not-a-run"), "--out", str(tmp_path / "table.csv")]) == 0
    table = capsys.readouterr().out
    assert "uniform-subset" in table and "not a run dir" in table
    assert (tmp_path / "table.csv").read_text().startswith("run,path,dataset,policy")
    assert main(["figures", str(out), "--out", str(tmp_path / "figs"), "--format", "png"]) == 0
    assert (tmp_path / "figs" / "run" / "probe_heatmap.png").is_file()
    assert (tmp_path / "figs" / "run" / "probe_heatmap.csv").is_file()


def test_figures_needs_runs_or_a_seed_table(tmp_path, capsys):
    assert main(["figures", "--out", str(tmp_path)]) == 2
    assert "aselect figures: error: runs: expected at least one run dir, or a seed table" in capsys.readouterr().err
    assert main(["figures", "--out", str(tmp_path), "--seed-table", str(tmp_path / "t.csv")]) == 2
    assert f"{tmp_path / 't.csv'}: no seed table there" in capsys.readouterr().err


def test_resume_reads_the_run_dirs_config_and_warns_on_stderr(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--data", "digits", "--model", "DiT-T/4", "--image-size", "8", "--batch-size", "16", "--lr", "3e-4",
             "--checkpoint-every", "2", "--out", str(out), "--no-progress"]
    assert main(["train", *flags, "--steps", "4"]) == 0
    newest = out / "checkpoints" / "step_0000004.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # corrupt: resume falls back to step 2
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--steps", "6", "--no-progress"]) == 0
    assert "aselect train: WARNING: skipping bad checkpoint" in capsys.readouterr().err
    assert RunDir(out).config().lr == 3e-4 and RunDir(out).latest()["step"] == 6
