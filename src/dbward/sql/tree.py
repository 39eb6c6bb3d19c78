"""Helpers over libpg_query's JSON parse tree (as plain dicts and lists).

A node is ``{"NodeType": {fields}}`` where a field holds any node; fields of
a fixed type (``relation``, ``withClause``, ...) hold the fields directly.
Walking plain dicts is several times faster than building pglast's Python AST,
and the analyser needs only a handful of node types.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Node = dict[str, Any]


def strings(items: list[Any] | None) -> list[str]:
    """The values of a list of ``String`` nodes (a qualified name)."""
    out = []
    for item in items or ():
        value = item.get("String")
        if value is not None:
            out.append(value.get("sval", ""))
    return out


def const_string(node: Node | None) -> str | None:
    """The text of a string constant (``A_Const`` or ``String``), else None."""
    if not node:
        return None
    const = node.get("A_Const")
    if const is not None:
        for key in ("sval", "ival", "fval", "boolval"):
            value = const.get(key)
            if value is not None:
                inner = value.get(key, 0 if key == "ival" else "")
                return str(inner).lower() if key == "boolval" else str(inner)
        return None
    string = node.get("String")
    return string.get("sval") if string is not None else None


def def_elems(options: list[Any] | None) -> Iterator[tuple[str, Node | None]]:
    """``(name, argument)`` of each ``DefElem`` in an option list."""
    for option in options or ():
        elem = option.get("DefElem")
        if elem is not None:
            yield elem.get("defname", ""), elem.get("arg")


def option_true(arg: Node | None) -> bool:
    """Whether a ``DefElem`` argument switches its option on (no argument means on)."""
    if arg is None:
        return True
    boolean = arg.get("Boolean")
    if boolean is not None:
        return bool(boolean.get("boolval", False))
    value = const_string(arg)
    if value is None:
        integer = arg.get("Integer")
        return bool(integer.get("ival", 0)) if integer is not None else True
    return value.lower() not in ("false", "off", "0", "no")


def same(a: Any, b: Any) -> bool:
    """Structural equality of two subtrees, ignoring source locations."""
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return False
        keys = a.keys() - {"location"}
        if keys != b.keys() - {"location"}:
            return False
        return all(same(a[k], b[k]) for k in keys)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def contains(node: Any, types: frozenset[str]) -> bool:
    """Whether any node of one of ``types`` occurs in the subtree."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in types:
                    return True
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return False
