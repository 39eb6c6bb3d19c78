"""Reading a policy file: YAML in, a validated :class:`Policy` out, errors with line numbers."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dbward.errors import ConfigError
from dbward.policy.model import Policy


class PolicyError(ConfigError):
    """The policy file cannot be used; the message names the file, line and cause."""


@cache
def default_policy() -> Policy:
    """The policy in force without a policy file: the built-in guardrails only."""
    return Policy()


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except RecursionError:
        raise PolicyError(f"{source}: nested too deeply to read as a policy") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{where}: not valid YAML: {problem}") from exc
    if data is None:
        # An empty file is far more often a half-written one than a wish for no rules.
        raise PolicyError(
            f"{source}: the policy file is empty; write `version: 1` for one with no rules"
        )
    if not isinstance(data, dict):
        raise PolicyError(f"{source}:1: a policy file is a mapping (version, rules, ...)")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = _line_of(root, loc)
            path = ".".join(str(p) for p in loc) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{source}:{line}: {path}: {message}")
        raise PolicyError("invalid policy:\n  " + "\n  ".join(lines)) from None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    line = key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
