"""Validators for the frozen options dataclasses of the registries (`analysis.grids`, `analysis.registry`): each
raises a one-line ValueError naming the option and what it expects."""
from __future__ import annotations

from typing import Any


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def check_count(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def check_one_of(name: str, value: Any, valid: Any) -> None:
    if value not in valid:
        raise ValueError(f"{name}: expected one of {sorted(valid)}, got {value!r}")
