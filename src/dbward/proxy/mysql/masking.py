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
from dbward.masking.mysql_rows import MysqlRowMasker
from dbward.masking.mysql_types import field, origin
from dbward.masking.plan import MaskingRules, ResultPlan, plan_column
from dbward.masking.rows import MaskStats, RowMasker
from dbward.masking.types import column_type
from dbward.masking.values import Found
from dbward.proxy.masking import SessionMasking

_PLAN_CACHE = 256
_TEXT = column_type(25)
# "Duplicate entry 'a@b.c' for key 'users.email'" (MySQL 8 and MariaDB word it alike)
_DUPLICATE = re.compile(r"(Duplicate entry ')(?P<value>.*)(' for key '(?P<key>[^']*)')", re.S)


class MysqlMasking:
    def __init__(self, masking: SessionMasking) -> None:
        self.session = masking
        self._plans: dict[tuple[ColumnDefinition, ...], ResultPlan] = {}
        self._rules: MaskingRules | None = None

    @property
    def enabled(self) -> bool:
        return self.session.enabled

    def plan(self, columns: list[ColumnDefinition]) -> ResultPlan:
        rules = self.session.rules
        if rules is not self._rules:
            self._plans.clear()
            self._rules = rules
        key = tuple(columns)
        found = self._plans.get(key)
        if found is None:
            planned = []
            for index, column in enumerate(columns):
                plan = plan_column(index, field(column), origin(column), rules, {})
                if plan is not None:
                    planned.append(plan)
            found = ResultPlan(len(columns), tuple(planned))
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.clear()
            self._plans[key] = found
        return found

    def row_masker(
        self, columns: list[ColumnDefinition], stats: Callable[[], MaskStats], *, binary: bool
    ) -> MysqlRowMasker | None:
        """What masks this result's rows, or None when nothing in it needs masking."""
        if not self.enabled:
            return None
        plan = self.plan(columns)
        if not plan.active:
            return None
        return MysqlRowMasker(RowMasker(plan, self.session.values, stats()), columns, binary=binary)

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
