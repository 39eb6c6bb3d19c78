"""A session's masking: the rules for its identity, and a plan for each result.

The rules come from the policy (recomputed when it is reloaded); the plan for
a result from its columns, named through the upstream's catalog. When the
catalog has not been asked about a table yet, :meth:`SessionMasking.prepare`
says so and the session holds the result until :meth:`load` has the answer.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from dbward.keyring import Keyring
from dbward.masking.columns import classify
from dbward.masking.copy import CopyMasker, CopyOptions
from dbward.masking.plan import Field, MaskingRules, ResultPlan, build_plan
from dbward.masking.rows import MaskStats, RowMasker
from dbward.masking.scanner import shared_scanner
from dbward.masking.strategies import Pseudonymizer
from dbward.masking.types import column_type
from dbward.masking.values import Found, ValueMasker
from dbward.policy.decide import Subject
from dbward.policy.masking import masking_rules
from dbward.proxy.catalog import Catalog, CatalogError
from dbward.proxy.policy_source import PolicySource
from dbward.sql.facts import Analysis

log = logging.getLogger(__name__)

NOTHING_TO_MASK = object()
"""A result whose plan is empty: its rows pass untouched."""

_TEXT = column_type(25)
_PLAN_CACHE = 256
_NOTICE_FIELDS = frozenset(b"MDHWqp")  # message, detail, hint, where, internal query/position
_KEY_DETAIL = re.compile(r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\)(?P<rest> .*)$", re.S)
_FAILING_ROW = re.compile(r"(Failing row contains \()(.*)(\)\.?)$", re.S)


class SessionMasking:
    def __init__(
        self, source: PolicySource, subject: Subject, keyring: Keyring, catalog: Catalog | None
    ) -> None:
        self.source = source
        self.subject = subject
        self.catalog = catalog
        self._pseudonyms = Pseudonymizer(keyring.key("pseudonym"))
        self._policy: object = None
        self._plans: dict[int, tuple[list[Field], ResultPlan, float]] = {}
        self.rules = MaskingRules()
        self.values = self._values()
        self._refresh()

    def _values(self) -> ValueMasker:
        return ValueMasker(
            shared_scanner(),
            self._pseudonyms,
            self.rules.strategies,
            self.rules.unmasked_entities,
        )

    def _refresh(self) -> None:
        policy = self.source.policy
        if policy is not self._policy:
            self._policy = policy
            self.rules = masking_rules(policy, self.subject)
            self.values = self._values()
            self._plans.clear()

    @property
    def keep_literals(self) -> bool:
        return self.source.policy.audit.statement_literals == "keep"

    @property
    def enabled(self) -> bool:
        self._refresh()
        return self.rules.enabled

    # results ------------------------------------------------------------------------

    def needs_catalog(self, fields: list[Field]) -> bool:
        if self.catalog is None:
            return False
        tables, types = self.catalog.missing(fields)
        return bool(tables or types)

    async def load(self, fields: list[Field]) -> None:
        if self.catalog is None:
            return
        try:
            await self.catalog.load(fields)
        except CatalogError as exc:
            # Without names, columns are judged by output name and content: still masked.
            log.warning("%s; masking by column output names and content only", exc.message)

    async def load_table(self, relation: str) -> None:
        """Look up the columns of a COPY's table (none known if that fails)."""
        if self.catalog is None:
            return
        try:
            await self.catalog.table_fields(relation)
        except CatalogError as exc:
            log.warning("%s; the COPY's values are scanned by content only", exc.message)

    async def describe(self, query: str, into: list[Field]) -> None:
        """Describe a COPY's query into ``into`` (left empty if that fails)."""
        if self.catalog is None:
            return
        try:
            into.extend(await self.catalog.describe(query))
        except CatalogError as exc:
            log.warning("%s; the COPY's values are scanned by content only", exc.message)

    def known_plan(self, fields: list[Field]) -> ResultPlan | None:
        """The plan made for this very list of columns (the tracker hands out the same
        list for the same description) within the last few seconds, if any."""
        entry = self._plans.get(id(fields))
        if entry is None or entry[0] is not fields or time.monotonic() > entry[2]:
            return None
        return entry[1]

    def plan(self, fields: list[Field]) -> ResultPlan:
        """The plan for a result with these columns, kept for the same columns again
        until the rules or the schema change (or a catalog answer may be stale)."""
        catalog = self.catalog
        origins = catalog.origins if catalog is not None else {}
        bases = catalog.bases if catalog is not None else {}
        plan = build_plan(fields, origins, self.rules, bases)
        if len(self._plans) >= _PLAN_CACHE:
            self._plans.clear()
        expiry = time.monotonic() + (catalog.ttl if catalog is not None else 60.0) / 2
        self._plans[id(fields)] = (fields, plan, expiry)
        return plan

    def row_masker(
        self, fields: list[Field], stats: Callable[[], MaskStats], plan: ResultPlan | None = None
    ) -> RowMasker | object:
        """What masks this result's rows, or NOTHING_TO_MASK."""
        plan = plan or self.plan(fields)
        if not plan.active:
            return NOTHING_TO_MASK
        return RowMasker(plan, self.values, stats())

    def copy_masker(
        self, options: CopyOptions, fields: list[Field] | None, stats: MaskStats
    ) -> Any:
        """What masks a COPY's rows; ``fields`` None when its columns are unknown."""
        if fields:
            wanted = set(options.columns)
            chosen = [f for f in fields if not wanted or f.name in wanted]
            if options.columns:
                order = {name: i for i, name in enumerate(options.columns)}
                chosen.sort(key=lambda f: order.get(f.name, 0))
            binary = options.binary
            typed = [
                Field(f.name, f.table_oid, f.attnum, f.type_oid, f.typmod, binary) for f in chosen
            ]
            masker = self.row_masker(typed, lambda: stats)
            if masker is NOTHING_TO_MASK:
                return NOTHING_TO_MASK
            assert isinstance(masker, RowMasker)
            return CopyMasker(options, masker, lambda width: None)

        def unknown(width: int) -> RowMasker | None:
            if options.binary:
                return None  # binary values of unknown types cannot be scanned: NULL them
            columns = [Field(f"column {i + 1}") for i in range(width)]
            masker = self.row_masker(columns, lambda: stats)
            return masker if isinstance(masker, RowMasker) else None

        return CopyMasker(options, None, unknown)

    def forget_schema(self) -> None:
        self._plans.clear()
        if self.catalog is not None:
            self.catalog.forget()

    # errors and notices ---------------------------------------------------------------

    def mask_notice(self, payload: bytes, stats: MaskStats | None) -> bytes | None:
        """An ErrorResponse/NoticeResponse payload with PII in its texts masked, or None."""
        if not self.enabled:
            return None
        parts = payload.split(b"\x00")
        changed = False
        found: Found = []
        for index, part in enumerate(parts):
            if not part or part[0] not in _NOTICE_FIELDS:
                continue
            text = part[1:].decode("utf-8", "replace")
            masked = self._mask_text(text, found)
            if masked != text:
                parts[index] = part[:1] + masked.encode()
                changed = True
        if not changed:
            return None
        if stats is not None:
            stats.add("(error message)", found)
        return b"\x00".join(parts)

    def _mask_text(self, text: str, found: Found) -> str:
        key = _KEY_DETAIL.match(text)
        if key is not None:
            text = self._key_detail(key, found)
        failing = _FAILING_ROW.search(text)
        if failing is not None:  # a whole row of data: names and addresses too
            text = text[: failing.start(2)] + "values withheld by dbward" + text[failing.end(2) :]
        raw = text.encode()
        masked = self.values.scan(raw, _TEXT, False, found)
        return masked.decode("utf-8", "replace") if masked is not None else text

    def _key_detail(self, key: re.Match[str], found: Found) -> str:
        """``Key (email)=(a@b.c) already exists.``: values of PII columns masked by name."""
        columns = [c.strip().strip('"') for c in key.group("columns").split(",")]
        values = key.group("values")
        unmasked = self.rules.unmasked_entities
        entities = [
            e for e in (classify(c).entity for c in columns) if e is not None and e not in unmasked
        ]
        if not entities:
            return key.group(0)
        found.extend(entities)
        masked = self.values.span_text(entities[0], values) if len(columns) == 1 else "..."
        return f"Key ({key.group('columns')})=({masked}){key.group('rest')}"


_QUOTED = re.compile(r"'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$", re.S)
_NUMBER = re.compile(r"(?<![\w$])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def statement_shape(text: str, analysis: Analysis | None) -> str:
    """``text`` with its literals replaced by placeholders, as PostgreSQL normalizes it.

    A statement dbward could not parse has its quoted strings and numbers
    replaced by ``?`` instead.
    """
    if analysis is not None and analysis.error is None and analysis.shape:
        return analysis.shape
    return _NUMBER.sub("?", _QUOTED.sub("?", text))
