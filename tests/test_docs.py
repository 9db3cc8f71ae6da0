"""docs/cli.md must document every subcommand and flag of `app.cli.build_parser()`, so the reference cannot go stale.

`python tests/test_docs.py` prints the flag tables of docs/cli.md, generated from the parser.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cli import build_parser  # noqa: E402
from aselect_core.train.config import TrainConfig  # noqa: E402

TRAIN_DEFAULTS = {k: v for k, v in TrainConfig().to_dict().items() if v is not None and k != "resume"}

CLI_DOC = ROOT / "docs" / "cli.md"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{name: sub-parser} of the `aselect` parser, in registration order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(sub: argparse.ArgumentParser) -> list[argparse.Action]:
    """The documented arguments of a sub-parser: every action but --help."""
    return [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.dest.upper() + (" ..." if action.nargs in ("+", "*") else "")
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return flag
    metavar = action.metavar or (action.dest.upper() if not action.choices else "{" + ",".join(map(str, action.choices)) + "}")
    return f"{flag} {metavar}" + (" ..." if action.nargs in ("+", "*") else "")


def _default(action: argparse.Action, command: str) -> str:
    if action.required or (not action.option_strings and action.nargs not in ("*", "?")):
        return "required"
    if action.nargs == 0:  # a switch: off unless given
        return ""
    if command == "train" and action.default is None and action.dest in TRAIN_DEFAULTS:  # TrainConfig's fields
        return f"`{TRAIN_DEFAULTS[action.dest]}`"
    if action.default is None or action.default == [] or action.default is argparse.SUPPRESS:
        return ""
    return "`" + (" ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)) + "`"


def flag_table(sub: argparse.ArgumentParser, command: str) -> str:
    """A Markdown table: argument | default | meaning, one row per argument of `sub`."""
    rows = ["| argument | default | meaning |", "| --- | --- | --- |"]
    for a in options(sub):
        text = (a.help or "").replace("|", "\\|")
        rows.append(f"| `{_name(a)}` | {_default(a, command)} | {text} |")
    return "\n".join(rows)


def documented_flags(section: str) -> set[str]:
    return set(re.findall(r"`(--[a-z][a-z0-9-]*)", section))


def sections(doc: str) -> dict[str, str]:
    """{subcommand: text} of the doc's `## aselect NAME` sections."""
    parts = re.split(r"^## aselect (\S+)\s*$", doc, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


@pytest.fixture(scope="module")
def doc_sections() -> dict[str, str]:
    return sections(CLI_DOC.read_text())


def test_every_subcommand_has_a_section(doc_sections):
    missing = [name for name in subcommands(build_parser()) if name not in doc_sections]
    assert not missing, f"docs/cli.md lacks a '## aselect NAME' section for {missing}"


def test_every_flag_is_documented(doc_sections):
    missing = []
    for name, sub in subcommands(build_parser()).items():
        text = doc_sections.get(name, "")
        for action in options(sub):
            if action.option_strings:
                if max(action.option_strings, key=len) not in documented_flags(text):
                    missing.append(f"{name} {max(action.option_strings, key=len)}")
            elif f"`{_name(action)}`" not in text:
                missing.append(f"{name} {_name(action)}")
    assert not missing, f"docs/cli.md does not document {missing} (regenerate: python tests/test_docs.py)"


def test_no_stale_flags(doc_sections):
    parser_flags = {name: {max(a.option_strings, key=len) for a in options(sub) if a.option_strings}
                    for name, sub in subcommands(build_parser()).items()}
    stale = [f"{name} {flag}" for name, text in doc_sections.items() if name in parser_flags
             for flag in sorted(documented_flags(text.split("Example", 1)[0]) - parser_flags[name])]
    assert not stale, f"docs/cli.md documents flags the parser does not have: {stale}"


def test_flag_tables_match_the_parser(doc_sections):
    """Each section's flag table is exactly the generated one (defaults and help texts included)."""
    stale = [name for name, sub in subcommands(build_parser()).items() if flag_table(sub, name) not in doc_sections[name]]
    assert not stale, f"docs/cli.md flag tables differ from the parser for {stale} (regenerate: python tests/test_docs.py)"


if __name__ == "__main__":
    for name, sub in subcommands(build_parser()).items():
        print(f"## aselect {name}\n\n{sub.description}\n\n{flag_table(sub, name)}\n")
