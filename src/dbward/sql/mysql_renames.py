"""Which column an output name stands for, when a query or a view renames it.

MySQL's column definitions name a value's origin, but through a view or a
derived table that renames a column (``SELECT full_name AS who``) they name
the view (or derived table) and the new name. These functions read the
renames back from SQL text, so masking can classify ``who`` as the
``full_name`` it is. Pure; texts sqlglot cannot read give no renames.
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError


@functools.lru_cache(maxsize=1024)
def renames(text: str) -> dict[str, str]:
    """``{output name: column name}`` for every ``column AS name`` in ``text`` (a query,
    or a ``CREATE VIEW v (a, b) AS SELECT x, y`` whose column list renames by position).
    Names are lower case: MySQL compares column names without case."""
    try:
        tree = sqlglot.parse_one(text, read="mysql")
    except (SqlglotError, RecursionError, ValueError):
        return {}
    if tree is None:
        return {}
    found: dict[str, str] = {}
    for alias in tree.find_all(exp.Alias):
        if isinstance(alias.this, exp.Column) and alias.alias:
            found.setdefault(alias.alias.lower(), alias.this.name.lower())
    if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
        query = tree.expression
        if isinstance(query, exp.Select):
            for name, item in zip(tree.this.expressions, query.expressions, strict=False):
                source = item.this if isinstance(item, exp.Alias) else item
                if isinstance(source, exp.Column) and isinstance(name, exp.Identifier):
                    found[name.name.lower()] = source.name.lower()
    return found
