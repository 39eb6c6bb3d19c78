"""A MySQL session's masking: a plan per result from its column definitions, and errors.

The rules and value maskers are the session's :class:`SessionMasking` (the
same policy, strategies and keyring as PostgreSQL's); the plan for a result
comes straight from its column definitions, which name each column's origin.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dbward.codec.mysql.results import ColumnDefinition
from dbward.masking.columns import classify
from dbward.masking.mysql_rows import MysqlRowMasker, RowLayout
from dbward.masking.mysql_types import field, origin
from dbward.masking.plan import MaskingRules, Origin, ResultPlan, plan_column
from dbward.masking.rows import MaskStats, RowMasker
from dbward.masking.types import column_type
from dbward.masking.values import Found
from dbward.proxy.masking import SessionMasking
from dbward.proxy.mysql.views import ViewMap
from dbward.sql.mysql_renames import renames

_PLAN_CACHE = 256
_TEXT = column_type(25)
# "Duplicate entry 'a@b.c' for key 'users.email'" (MySQL 8 and MariaDB word it alike)
_DUPLICATE = re.compile(r"(Duplicate entry ')(?P<value>.*)(' for key '(?P<key>[^']*)')", re.S)


class MysqlMasking:
    def __init__(self, masking: SessionMasking, views: Callable[[], ViewMap] = lambda: {}) -> None:
        self.session = masking
        self.views = views
        self._plans: dict[
            tuple[tuple[ColumnDefinition, ...], str], tuple[ResultPlan, RowLayout]
        ] = {}
        self._rules: MaskingRules | None = None

    @property
    def enabled(self) -> bool:
        return self.session.enabled

    def plan(self, columns: list[ColumnDefinition], shape: str = "") -> ResultPlan:
        return self._planned(columns, shape)[0]

    def _planned(self, columns: list[ColumnDefinition], shape: str) -> tuple[ResultPlan, RowLayout]:
        """The plan for a result; ``shape`` is its statement's (placeholders for literals),
        whose ``x AS y`` renames count where a derived table hides a column's origin."""
        rules = self.session.rules
        if rules is not self._rules:
            self._plans.clear()
            self._rules = rules
        key = (tuple(columns), shape)
        found = self._plans.get(key)
        if found is None:
            views = self.views()
            statement: dict[str, str] | None = None
            planned = []
            for index, column in enumerate(columns):
                source = origin(column)
                if source is not None:
                    name = column.org_name.lower()
                    renamed = views.get((column.schema, column.org_table), {}).get(name)
                    if renamed is None and shape:
                        if statement is None:
                            statement = renames(shape)
                        renamed = statement.get(name)
                    if renamed is not None and renamed != name:
                        source = Origin(source.schema, source.table, renamed)
                plan = plan_column(index, field(column), source, rules, {})
                if plan is not None:
                    planned.append(plan)
            result = ResultPlan(len(columns), tuple(planned))
            found = (result, RowLayout.of(result, columns))
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.clear()
            self._plans[key] = found
        return found

    def row_masker(
        self,
        columns: list[ColumnDefinition],
        stats: Callable[[], MaskStats],
        *,
        binary: bool,
        shape: str = "",
    ) -> MysqlRowMasker | None:
        """What masks this result's rows, or None when nothing in it needs masking."""
        if not self.enabled:
            return None
        plan, layout = self._planned(columns, shape)
        if not plan.active:
            return None
        return MysqlRowMasker(RowMasker(plan, self.session.values, stats()), layout, binary=binary)

    def mask_error(self, message: str, stats: MaskStats | None) -> str | None:
        """An ERR packet's message with PII masked, or None when there is none."""
        if not self.enabled:
            return None
        found: Found = []
        text = message
        duplicate = _DUPLICATE.search(text)
        if duplicate is not None:
            key = duplicate.group("key").rpartition(".")[2]
            entity = classify(key).entity
            if entity is not None and entity not in self.session.rules.unmasked_entities:
                found.append(entity)
                masked_value = self.session.values.span_text(entity, duplicate.group("value"))
                text = (
                    text[: duplicate.start("value")] + masked_value + text[duplicate.end("value") :]
                )
        scanned = self.session.values.scan(text.encode(), _TEXT, False, found)
        if scanned is not None:
            text = scanned.decode("utf-8", "replace")
        if text == message:
            return None
        if stats is not None:
            stats.add("(error message)", found)
        return text
