"""Whether an UPDATE or DELETE has an *effective* WHERE: one that can spare rows.

The judgement depends only on the shape of the clause, never on literal
values, because analyses are cached by fingerprint and a fingerprint ignores
constants (``WHERE 1=1`` and ``WHERE 1=0`` share one). So a clause that
compares no column at all is constant, whatever its values, and counts as
none; so do tautologies: ``x = x``, ``x OR NOT x``, ``x IS NULL OR x IS NOT
NULL``, and an OR with a constant branch (``id = 5 OR 1=1``).
"""

from __future__ import annotations

from typing import Any

from dbward.sql.tree import Node, contains, same

_ROW_REFERENCES = frozenset({"ColumnRef", "CurrentOfExpr"})
_SELF_COMPARISONS = frozenset({"=", ">=", "<="})


def effective_where(clause: Node | None) -> bool:
    """True when ``clause`` can limit the rows an UPDATE/DELETE touches."""
    if not clause:
        return False
    return _restricts(clause)


def _restricts(node: Node) -> bool:
    if not contains(node, _ROW_REFERENCES):
        return False  # constant: true for every row or for none
    boolean = node.get("BoolExpr")
    if boolean is not None:
        args: list[Node] = boolean.get("args", [])
        op = boolean.get("boolop")
        if op == "AND_EXPR":
            return any(_restricts(arg) for arg in args)
        if op == "OR_EXPR":
            return all(_restricts(arg) for arg in args) and not _complementary(args)
        return bool(args) and _restricts(args[0])  # NOT_EXPR
    expr = node.get("A_Expr")
    return expr is None or not _self_comparison(expr)


def _self_comparison(expr: dict[str, Any]) -> bool:
    """``x = x``, ``x >= x``, ``x IS NOT DISTINCT FROM x``: true for every row."""
    kind = expr.get("kind")
    if kind == "AEXPR_NOT_DISTINCT":
        return _same_operand(expr.get("lexpr"), expr.get("rexpr"))
    if kind != "AEXPR_OP":
        return False
    names = expr.get("name", [])
    op = names[-1].get("String", {}).get("sval") if names else None
    return op in _SELF_COMPARISONS and _same_operand(expr.get("lexpr"), expr.get("rexpr"))


def _same_operand(left: Any, right: Any) -> bool:
    """The same expression, counting ``t.id`` and ``id`` as one column."""
    if same(left, right):
        return True
    a = (left or {}).get("ColumnRef", {}).get("fields")
    b = (right or {}).get("ColumnRef", {}).get("fields")
    if not a or not b or not same(a[-1], b[-1]):
        return False
    return len(a) == 1 or len(b) == 1


def _complementary(args: list[Node]) -> bool:
    """Whether an OR's branches hold some ``x`` and ``NOT x`` (or IS NULL / IS NOT NULL)."""
    negated = []
    for arg in args:
        boolean = arg.get("BoolExpr")
        if boolean is not None and boolean.get("boolop") == "NOT_EXPR":
            negated.extend(boolean.get("args", []))
    if any(same(n, arg) for n in negated for arg in args):
        return True
    tests = [arg["NullTest"] for arg in args if "NullTest" in arg]
    return any(
        a.get("nulltesttype") != b.get("nulltesttype") and same(a.get("arg"), b.get("arg"))
        for i, a in enumerate(tests)
        for b in tests[i + 1 :]
    )
