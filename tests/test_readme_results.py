"""The README's results table is generated from the shipped runs' analyses: it must equal what
`aselect compare data/demo_runs/* --methods hfr mi --out TABLE.md` writes, so no number in it can go stale."""
from __future__ import annotations

import re
from pathlib import Path

from analysis.compare import compare_runs, table_markdown

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- results-table:begin -->\n(.*?)<!-- results-table:end -->", re.S)


def shipped_table() -> str:
    runs = sorted(p for p in (ROOT / "data" / "demo_runs").iterdir() if (p / "config.json").is_file())
    return table_markdown(compare_runs(runs, methods=("hfr", "mi")), methods=("hfr", "mi"))


def test_readme_results_table_matches_the_runs_summaries():
    found = BLOCK.search((ROOT / "README.md").read_text())
    assert found, "README.md lacks the <!-- results-table:begin --> ... <!-- results-table:end --> block"
    expected = shipped_table()
    assert found.group(1) == expected, f"README results table is stale; regenerate it as:\n{expected}"


def test_table_markdown_formats_missing_values():
    import pandas as pd

    row = {c: float("nan") for c in compare_runs([ROOT / "no-such-run"]).columns}
    table = table_markdown(pd.DataFrame([{**row, "run": "r", "oracle_accuracy": 0.5, "oracle_ci_low": 0.45,
                                          "oracle_ci_high": 0.55, "oracle_timestep": 50, "oracle_layer": "block.2"}]),
                           methods=("hfr",))
    assert table.splitlines()[-1] == "| r | – | – | (50, block.2) | 50.0 [45.0, 55.0] | – | – | – |"
