"""Golden fixture files: YAML lists of cases, and readable test ids for them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ID_TEXT_CHARS = 40


def load_cases(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise TypeError(f"{path.name}: a fixture file holds a YAML list of cases")
    return data


def case_id(stem: str, index: int, text: object) -> str:
    """``file:NNN:the case's text``, shortened and on one printable line."""
    shown = re.sub(r"\s+", " ", str(text)).strip()
    shown = "".join(ch if ch.isprintable() else "?" for ch in shown)
    if len(shown) > ID_TEXT_CHARS:
        shown = shown[:ID_TEXT_CHARS] + "..."
    return f"{stem}:{index:03d}:{shown or '<empty>'}"


def key_problems(case: object, required: frozenset[str], allowed: frozenset[str]) -> list[str]:
    """What is wrong with a case's shape: not a mapping, keys missing or unknown."""
    if not isinstance(case, dict):
        return [f"a case is a mapping, not {type(case).__name__}"]
    out = []
    if missing := required - case.keys():
        out.append(f"missing keys {sorted(missing)}")
    if unknown := case.keys() - allowed:
        out.append(f"unknown keys {sorted(unknown)}")
    return out
