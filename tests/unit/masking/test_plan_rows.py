"""Result plans (dbward.masking.plan) and DataRow rewriting (dbward.masking.rows)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbward.masking.entities import DEFAULT_STRATEGIES, Entity, Strategy
from dbward.masking.plan import (
    ColumnRule,
    Field,
    MaskingRules,
    Origin,
    ResultPlan,
    build_plan,
)
from dbward.masking.rows import MaskStats, RowMasker
from dbward.masking.types import Kind
from tests.unit.masking import support as s

USERS, PRODUCTS, ORDERS, TICKETS = 16400, 16500, 16600, 16700
ORIGINS = {
    (USERS, 1): Origin("public", "users", "id"),
    (USERS, 2): Origin("public", "users", "email"),
    (USERS, 3): Origin("public", "users", "name"),
    (USERS, 4): Origin("public", "users", "notes"),
    (USERS, 5): Origin("public", "users", "created_at"),
    (USERS, 6): Origin("public", "users", "phone"),
    (USERS, 7): Origin("public", "users", "contact"),
    (USERS, 8): Origin("public", "users", "profile"),
    (PRODUCTS, 1): Origin("public", "products", "name"),
    (PRODUCTS, 2): Origin("public", "products", "price"),
    (ORDERS, 1): Origin("billing", "orders", "card_number"),
    (ORDERS, 2): Origin("billing", "orders", "tax_ref"),
    (TICKETS, 1): Origin("support", "tickets", "body"),
}

ID = Field("id", USERS, 1, s.INT4)
EMAIL = Field("email", USERS, 2, s.TEXT)
NAME = Field("name", USERS, 3, s.VARCHAR, s.varchar_typmod(40))
NOTES = Field("notes", USERS, 4, s.TEXT)
CREATED = Field("created_at", USERS, 5, s.TIMESTAMPTZ)
PHONE = Field("phone", USERS, 6, s.INT8, binary=True)
CONTACT = Field("contact", USERS, 7, s.TEXT)
PROFILE = Field("profile", USERS, 8, s.JSONB, binary=True)
PRODUCT_NAME = Field("name", PRODUCTS, 1, s.TEXT)
PRICE = Field("price", PRODUCTS, 2, s.NUMERIC)
CARD = Field("card_number", ORDERS, 1, s.NUMERIC, binary=True)
TAX_REF = Field("tax_ref", ORDERS, 2, s.TEXT)
BODY = Field("body", TICKETS, 1, s.TEXT)

USER_FIELDS = [ID, EMAIL, NAME, NOTES, CREATED, PHONE]


def plan(fields: list[Field], rules: MaskingRules | None = None, **kw: object) -> ResultPlan:
    return build_plan(fields, ORIGINS, rules or MaskingRules(), **kw)  # type: ignore[arg-type]


def summary(result: ResultPlan) -> dict[str, tuple[str | None, str | None, bool]]:
    return {
        c.label: (c.entity and c.entity.value, c.strategy and c.strategy.value, c.scan)
        for c in result.columns
    }


# --- plans ----------------------------------------------------------------------------------------


def test_a_plan_masks_classified_columns_and_scans_text() -> None:
    result = plan(USER_FIELDS)
    assert result.width == 6
    assert result.active
    assert summary(result) == {
        "public.users.email": ("email", "partial", False),
        "public.users.name": ("person_name", "pseudonym", False),
        "public.users.notes": (None, None, True),
        "public.users.phone": ("phone", "partial", False),
    }
    assert [c.index for c in result.columns] == [1, 2, 3, 5]
    phone = result.columns[-1]
    assert phone.binary
    assert phone.ctype.kind is Kind.INT


def test_the_table_decides_whether_name_is_a_person() -> None:
    assert summary(plan([PRODUCT_NAME, PRICE])) == {"public.products.name": (None, None, True)}


def test_a_result_with_nothing_to_mask_has_an_inactive_plan() -> None:
    result = plan([ID, CREATED, PRICE])
    assert not result.active
    assert result.width == 3


def test_masking_disabled_plans_nothing() -> None:
    result = plan(USER_FIELDS, MaskingRules(enabled=False))
    assert not result.active
    assert result.width == 6


def test_policy_strategies_replace_the_defaults() -> None:
    rules = MaskingRules(strategies={**DEFAULT_STRATEGIES, Entity.EMAIL: Strategy.PSEUDONYM})
    assert summary(plan([EMAIL], rules))["public.users.email"] == ("email", "pseudonym", False)


def test_unmasked_columns_are_neither_masked_nor_scanned() -> None:
    rules = MaskingRules(unmasked_columns=("*.users.email", "public.users.notes"))
    assert set(summary(plan(USER_FIELDS, rules))) == {"public.users.name", "public.users.phone"}


def test_an_unmasked_entity_column_is_still_scanned_for_other_pii() -> None:
    rules = MaskingRules(unmasked_entities=frozenset({Entity.EMAIL, Entity.PHONE}))
    result = summary(plan(USER_FIELDS, rules))
    assert result["public.users.email"] == (None, None, True)
    assert "public.users.phone" not in result  # an int8 cannot be scanned


def test_a_manual_rule_classifies_a_column_by_hand() -> None:
    rules = MaskingRules(
        columns=(ColumnRule("*.orders.tax_ref", Entity.NATIONAL_ID, scan=False, strategy=None),)
    )
    assert summary(plan([TAX_REF], rules)) == {
        "billing.orders.tax_ref": ("national_id", "redact", False)
    }


def test_a_manual_rule_strategy_wins_over_the_policy_strategy() -> None:
    rules = MaskingRules(
        columns=(ColumnRule("public.users.email", Entity.EMAIL, False, Strategy.NULL),)
    )
    assert summary(plan([EMAIL], rules))["public.users.email"] == ("email", "null", False)


def test_a_manual_rule_wins_over_the_column_name() -> None:
    nothing = MaskingRules(columns=(ColumnRule("*.users.email", None, scan=False),))
    assert not plan([EMAIL], nothing).active
    free = MaskingRules(columns=(ColumnRule("*.users.email", None, scan=True),))
    assert summary(plan([EMAIL], free)) == {"public.users.email": (None, None, True)}


def test_the_first_matching_manual_rule_applies() -> None:
    rules = MaskingRules(
        columns=(
            ColumnRule("public.users.*", None, scan=False),
            ColumnRule("*.users.email", Entity.SECRET, scan=False),
        )
    )
    assert not plan([EMAIL, NOTES], rules).active


def test_manual_free_text_on_a_type_that_cannot_be_scanned_plans_nothing() -> None:
    rules = MaskingRules(columns=(ColumnRule("*.users.id", None, scan=True),))
    assert not plan([ID], rules).active


def test_a_manual_entity_that_is_unmasked_is_not_scanned_either() -> None:
    rules = MaskingRules(
        unmasked_entities=frozenset({Entity.NATIONAL_ID}),
        columns=(ColumnRule("*.orders.tax_ref", Entity.NATIONAL_ID, scan=False),),
    )
    assert not plan([TAX_REF], rules).active


def test_an_alias_that_names_pii_is_masked_as_pii() -> None:
    aliased = Field("email", USERS, 7, s.TEXT)  # SELECT contact AS email
    assert summary(plan([aliased]))["public.users.contact"] == ("email", "partial", False)
    assert summary(plan([CONTACT])) == {"public.users.contact": (None, None, True)}


def test_an_expression_is_classified_by_its_output_name() -> None:
    expression = Field("billing_email", 0, 0, s.TEXT)  # SELECT lower(x) AS billing_email
    assert summary(plan([expression])) == {"billing_email": ("email", "partial", False)}
    assert summary(plan([Field("count", 0, 0, s.INT8)])) == {}


def test_an_unknown_origin_is_classified_by_the_output_name() -> None:
    stray = Field("ssn", 99999, 1, s.TEXT)
    assert summary(plan([stray])) == {"ssn": ("ssn", "redact", False)}


def test_unknown_types_in_text_format_are_scanned_as_text() -> None:
    custom = Field("notes", USERS, 4, 50000)
    assert summary(plan([custom]))["public.users.notes"] == (None, None, True)
    binary = Field("notes", USERS, 4, 50000, binary=True)
    assert not plan([binary]).active


def test_domains_are_planned_as_their_base_type() -> None:
    domain = Field("email", USERS, 2, 50001)
    result = plan([domain], base_types={50001: s.VARCHAR})
    assert result.columns[0].ctype.kind is Kind.TEXT
    assert summary(result) == {"public.users.email": ("email", "partial", False)}


@pytest.mark.xfail(
    strict=True,
    reason="plan_column drops a manual rule's strategy for a free_text column (ColumnPlan gets "
    "strategy None and scanning uses the session strategies), so docs/masking.md's "
    "'holds: free_text, strategy: ...' has no effect",
)
def test_a_free_text_rule_strategy_applies_to_what_is_found() -> None:
    rules = MaskingRules(
        columns=(ColumnRule("*.tickets.body", None, scan=True, strategy=Strategy.REDACT),)
    )
    result = plan([BODY], rules)
    masker = s.masker()
    row = RowMasker(result, masker, MaskStats()).rewrite(s.datarow(b"mail a@b.io"), 0, 19)
    assert row is not None
    assert s.parse_datarow(row) == [b"mail [email]"]


# --- rows -----------------------------------------------------------------------------------------


def masker_for(rules: MaskingRules) -> RowMasker:
    return RowMasker(
        plan(USER_FIELDS, rules),
        s.masker(rules.strategies, rules.unmasked_entities),
        MaskStats(),
    )


def rewrite(rows: RowMasker, *fields: bytes | None) -> list[bytes | None] | None:
    payload = s.datarow(*fields)
    result = rows.rewrite(payload, 0, len(payload))
    return None if result is None else s.parse_datarow(result)


PHONE_BIN = s.encode_int(2125550143, s.INT8)


def test_only_planned_columns_change() -> None:
    rows = masker_for(MaskingRules())
    created = b"2024-01-31 10:00:00+00"
    result = rewrite(rows, b"42", b"alice@example.com", b"Ada Lovelace", b"call 212-555-0143",
                     created, PHONE_BIN)  # fmt: skip
    assert result is not None
    assert result[0] == b"42"
    assert result[4] == created
    assert result[1] == b"****@example.com"
    assert result[2] is not None
    assert result[2].startswith(b"Person ")
    assert result[3] == b"call ***-***-**43"
    assert result[5] is not None
    assert s.decode_int(result[5], s.INT8) == 143


def test_nulls_stay_null() -> None:
    rows = masker_for(MaskingRules())
    result = rewrite(rows, None, b"alice@example.com", None, None, None, None)
    assert result == [None, b"****@example.com", None, None, None, None]


def test_a_row_without_pii_is_returned_unchanged_as_none() -> None:
    rows = masker_for(MaskingRules())
    assert rewrite(rows, b"1", None, None, b"nothing personal", b"2024-01-31", None) is None
    assert rows.stats.values == 0


def test_a_null_strategy_writes_sql_null() -> None:
    rules = MaskingRules(strategies={**DEFAULT_STRATEGIES, Entity.EMAIL: Strategy.NULL})
    rows = masker_for(rules)
    result = rewrite(rows, b"1", b"alice@example.com", None, None, None, None)
    assert result == [b"1", None, None, None, None, None]


def test_stats_count_values_per_column_and_entity() -> None:
    rows = masker_for(MaskingRules())
    rewrite(rows, b"1", b"a@b.io", b"Ada", b"a@b.io and 536-80-4398", None, PHONE_BIN)
    rewrite(rows, b"2", b"a@b.io", None, b"no pii", None, None)
    rewrite(rows, b"3", None, None, b"c@d.io", None, None)
    assert rows.stats.settle().summary() == {
        "values": 6,
        "entities": {"email": 4, "person_name": 1, "phone": 1, "ssn": 1},
        "columns": {
            "public.users.email": {"email": 2},
            "public.users.name": {"person_name": 1},
            "public.users.notes": {"email": 2, "ssn": 1},
            "public.users.phone": {"phone": 1},
        },
    }


def test_a_repeated_value_masks_the_same_and_counts_each_time() -> None:
    rows = masker_for(
        MaskingRules(strategies={**DEFAULT_STRATEGIES, Entity.EMAIL: Strategy.PSEUDONYM})
    )
    one = rewrite(rows, None, b"alice@example.com", None, None, None, None)
    two = rewrite(rows, None, b"alice@example.com", None, None, None, None)
    assert one == two
    assert one is not None
    assert one[1] != b"alice@example.com"
    assert rows.stats.settle().columns["public.users.email"] == Counter({"email": 2})


def test_unmasked_entities_and_columns_are_respected_row_by_row() -> None:
    rules = MaskingRules(
        unmasked_entities=frozenset({Entity.EMAIL}), unmasked_columns=("*.users.name",)
    )
    rows = masker_for(rules)
    result = rewrite(rows, b"1", b"alice@example.com", b"Ada Lovelace", b"bob@x.org 536-80-4398",
                     None, None)  # fmt: skip
    assert result == [b"1", b"alice@example.com", b"Ada Lovelace", b"bob@x.org [ssn]", None, None]


def test_a_payload_inside_a_larger_buffer() -> None:
    rows = masker_for(MaskingRules())
    payload = s.datarow(b"1", b"alice@example.com", None, None, None, None)
    buffer = b"HEADER" + payload + b"TRAILER"
    result = rows.rewrite(buffer, 6, 6 + len(payload))
    assert result is not None
    assert s.parse_datarow(result) == [b"1", b"****@example.com", None, None, None, None]


def test_a_row_with_fewer_fields_than_the_plan_is_rewritten_as_far_as_it_goes() -> None:
    rows = masker_for(MaskingRules())
    result = rewrite(rows, b"1", b"alice@example.com")
    assert result == [b"1", b"****@example.com"]


def test_an_empty_string_in_a_classified_column_is_still_a_valid_value() -> None:
    rows = masker_for(MaskingRules())
    result = rewrite(rows, b"1", b"", None, b"", None, None)
    assert result is not None
    assert result[1] is not None
    assert result[3] == b""


def test_binary_jsonb_and_numeric_columns_in_a_row() -> None:
    result_plan = build_plan([PROFILE, CARD], ORIGINS, MaskingRules())
    rows = RowMasker(result_plan, s.masker(), MaskStats())
    profile = b"\x01" + json.dumps({"email": "alice@example.com"}).encode()
    from decimal import Decimal

    card = s.encode_numeric(Decimal(4111111111111111))
    payload = s.datarow(profile, card)
    out = rows.rewrite(payload, 0, len(payload))
    assert out is not None
    fields = s.parse_datarow(out)
    assert fields[0] is not None
    assert s.decode_jsonb(fields[0]) == {"email": "****@example.com"}
    assert fields[1] is not None
    assert s.decode_numeric(fields[1]) == 1111


def test_stats_add_and_add_whole() -> None:
    stats = MaskStats()
    stats.add("a.b.c", [Entity.EMAIL])
    stats.add("a.b.c", [Entity.EMAIL, Entity.PHONE])
    stats.add("a.b.d", [])
    stats.add_whole("a.b.e", "ssn", 3)
    assert stats.summary() == {
        "values": 6,
        "entities": {"email": 2, "phone": 1, "ssn": 3},
        "columns": {"a.b.c": {"email": 2, "phone": 1}, "a.b.d": {}, "a.b.e": {"ssn": 3}},
    }


def test_whole_value_counts_are_settled_once() -> None:
    rows = masker_for(MaskingRules())
    rewrite(rows, None, b"a@b.io", None, None, None, None)
    assert rows.stats.settle().values == 1
    assert rows.stats.settle().values == 1  # settling again adds nothing
    rewrite(rows, None, b"a@b.io", None, None, None, None)
    assert rows.stats.settle().values == 2


def test_two_results_of_one_statement_share_its_stats() -> None:
    stats = MaskStats()
    first = RowMasker(plan([EMAIL]), s.masker(), stats)
    second = RowMasker(plan([NOTES]), s.masker(), stats)
    row = s.datarow(b"a@b.io")
    assert first.rewrite(row, 0, len(row)) is not None
    assert second.rewrite(row, 0, len(row)) is not None
    assert stats.settle().summary()["columns"] == {
        "public.users.email": {"email": 1},
        "public.users.notes": {"email": 1},
    }


CELLS = st.one_of(
    st.none(),
    st.sampled_from(
        [b"alice@example.com", b"536-80-4398", b"plain", b"", b"Ada", b"+44 20 7946 0958"]
    ),
    st.binary(max_size=12).filter(lambda b: b.isascii()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(CELLS, min_size=6, max_size=6))
def test_any_row_keeps_its_shape_and_unplanned_fields(cells: list[bytes | None]) -> None:
    cells[5] = None if cells[5] is None else PHONE_BIN  # an int8 in binary
    rows = masker_for(MaskingRules())
    payload = s.datarow(*cells)
    result = rows.rewrite(payload, 0, len(payload))
    fields = cells if result is None else s.parse_datarow(result)
    assert len(fields) == 6
    assert [f is None for f in fields] == [c is None for c in cells]
    assert fields[0] == cells[0]
    assert fields[4] == cells[4]
    if result is None:
        assert all(c is None for c in (cells[1], cells[2], cells[5]))
