"""`require_columns`: the one check every table reader in `analysis` makes before it trusts a DataFrame."""
from __future__ import annotations

from typing import Iterable

import pandas as pd


def require_columns(df: pd.DataFrame, columns: Iterable[str], name: str) -> pd.DataFrame:
    """`df` unchanged when it has every column; else a one-line ValueError naming `name` and what is missing."""
    columns = list(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: expected columns {columns}, missing {missing}")
    return df
