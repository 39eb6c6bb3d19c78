"""ValueMasker.scan: PII found inside text, JSON and arrays, masked in place."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.masking import arrays
from dbward.masking.entities import Entity, Strategy
from dbward.masking.types import ColumnType, column_type
from dbward.masking.values import ValueMasker
from tests.unit.masking import support as s

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT_T = column_type(s.TEXT)
JSON_T = column_type(s.JSON)
JSONB_T = column_type(s.JSONB)
TEXT_ARRAY_T = column_type(s.TEXT_ARRAY)
JSON_ARRAY_T = column_type(s.JSON_ARRAY)

M = s.masker()


def scan(
    value: bytes, ctype: ColumnType = TEXT_T, binary: bool = False, masker: ValueMasker = M
) -> tuple[bytes | None, list[Entity]]:
    found: list[Entity] = []
    return masker.scan(value, ctype, binary, found), found


# --- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"hello world",
        b"order ORD-2024-000123 on 2024-01-31",
        b"version 1.2.3",
        "ü日本".encode(),
    ],
)
def test_text_without_pii_is_left_alone(text: bytes) -> None:
    assert scan(text) == (None, [])


def test_text_with_pii_is_masked_in_place() -> None:
    value = b"Ada: ada@example.com, +44 20 7946 0958, card 4111 1111 1111 1111, ssn 536-80-4398"
    result, found = scan(value)
    assert result == (
        b"Ada: ****@example.com, +** ** **** **58, card **** **** **** 1111, ssn [ssn]"
    )
    assert found == [Entity.EMAIL, Entity.PHONE, Entity.CARD, Entity.SSN]


def test_text_ip_is_pseudonymized_by_default() -> None:
    result, found = scan(b"from 192.168.1.10 and 192.168.1.10")
    assert result is not None
    assert found == [Entity.IP, Entity.IP]
    first, second = result.split(b" and ")
    assert first.startswith(b"from 10.")
    assert first[5:] == second


@pytest.mark.parametrize(
    ("strategy", "want"),
    [
        (Strategy.REDACT, b"mail [email] now"),
        (Strategy.PARTIAL, b"mail ****@example.com now"),
        (Strategy.NULL, b"mail [email] now"),  # NULL cannot replace part of a value: redact
    ],
)
def test_text_spans_follow_the_session_strategy(strategy: Strategy, want: bytes) -> None:
    masker = s.masker({Entity.EMAIL: strategy})
    assert scan(b"mail alice@example.com now", masker=masker)[0] == want


def test_text_pseudonym_spans_are_deterministic() -> None:
    masker = s.masker({Entity.EMAIL: Strategy.PSEUDONYM})
    one = scan(b"a: alice@example.com", masker=masker)[0]
    two = scan(b"b: Alice@Example.com", masker=masker)[0]
    assert one is not None
    assert two is not None
    assert one[3:] == two[3:]
    assert one.endswith(b"@masked.invalid")


def test_unmasked_entities_are_left_visible() -> None:
    masker = s.masker(unmasked=frozenset({Entity.EMAIL}))
    assert scan(b"alice@example.com", masker=masker) == (None, [])
    result, found = scan(b"alice@example.com 536-80-4398", masker=masker)
    assert result == b"alice@example.com [ssn]"
    assert found == [Entity.SSN]


def test_varchar_n_holds_when_a_mask_is_longer_than_the_value() -> None:
    masker = s.masker({Entity.EMAIL: Strategy.PSEUDONYM})
    ctype = column_type(s.VARCHAR, s.varchar_typmod(12))
    result, found = scan(b"x a@b.io y", ctype, masker=masker)
    assert result == b"x ****** y"
    assert found == [Entity.EMAIL]


SNIPPETS = [
    "alice@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "536-80-4398",
    "DE89 3704 0044 0532 0130 00",
    "192.168.1.10",
    "2001:db8::1",
    "AB 12 34 56 C",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "ordinary words",
    "ORD-2024-000123",
    "ü日本語",
]
FILLER = st.text(string.ascii_letters + " ,;:!?()ü日", max_size=6)


@st.composite
def texts_with_pii(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(SNIPPETS), max_size=4))
    out = [draw(FILLER)]
    for part in parts:
        out += [" ", part, " ", draw(FILLER)]
    return "".join(out)


@SETTINGS
@given(
    texts_with_pii(),
    st.integers(1, 80),
    st.fixed_dictionaries({e: st.sampled_from(list(Strategy)) for e in Entity}),
)
def test_scanned_text_is_valid_utf8_within_the_limit(
    text: str, n: int, strategies: dict[Entity, Strategy]
) -> None:
    text = text[:n]
    masker = s.masker(strategies)
    ctype = column_type(s.VARCHAR, s.varchar_typmod(n))
    result, _ = scan(text.encode(), ctype, masker=masker)
    if result is not None:
        assert len(result.decode("utf-8")) <= n


@SETTINGS
@given(texts_with_pii())
def test_detected_values_never_survive_scanning(text: str) -> None:
    result, found = scan(text.encode())
    data = text.encode()
    hits = M.hits(data)
    assert len(found) == len(hits)
    out = data if result is None else result
    for hit in hits:
        assert data[hit.start : hit.end] not in out


@SETTINGS
@given(st.text(max_size=200))
def test_scanning_any_text_never_raises(text: str) -> None:
    result, found = scan(text.encode())
    if result is None:
        assert found == []
    else:
        result.decode("utf-8")
        assert found


# --- JSON -----------------------------------------------------------------------------------------


def scan_json(doc: Any, masker: ValueMasker = M) -> tuple[Any, list[Entity]]:
    result, found = scan(json.dumps(doc).encode(), JSON_T, masker=masker)
    return (None if result is None else json.loads(result)), found


def test_json_without_pii_is_left_alone() -> None:
    assert scan_json({"id": 5, "name": "Widget", "tags": ["a", "b"], "price": 19.99}) == (None, [])


def test_json_values_under_pii_keys_are_masked_whole() -> None:
    doc = {
        "first_name": "Ada",
        "email": "not-an-address",
        "ssn": "536-80-4398",
        "phone": 2125550143,
        "card_number": "4111111111111111",
        "password": "hunter2",
        "id": 5,
    }
    masked, found = scan_json(doc)
    assert masked["first_name"].startswith("Person ")
    assert masked["email"] == "[email]"  # no '@': nothing to keep
    assert masked["ssn"] == "[ssn]"
    assert masked["phone"] == 0  # a number under a PII key stays a number
    assert masked["card_number"] == "************1111"
    assert masked["password"] == "[password]"
    assert masked["id"] == 5
    assert set(found) >= {Entity.PERSON_NAME, Entity.EMAIL, Entity.SSN, Entity.PHONE}


def test_json_keys_are_classified_like_column_names() -> None:
    masked, _ = scan_json({"billingEmail": "x", "token_count": "12", "reset_token": "abc"})
    assert masked == {"billingEmail": "[email]", "token_count": "12", "reset_token": "[secret]"}


def test_json_pii_is_found_at_any_depth() -> None:
    doc = {
        "a": ["x", "bob@example.com", {"email": "c@d.io", "n": [1, "+44 20 7946 0958"]}],
        "b": {"c": {"d": "ip 192.168.1.10"}},
    }
    masked, found = scan_json(doc)
    assert masked["a"][1] == "****@example.com"
    assert masked["a"][2]["email"] == "****@d.io"
    assert masked["a"][2]["n"] == [1, "+** ** **** **58"]
    assert masked["b"]["c"]["d"].startswith("ip 10.")
    assert found.count(Entity.EMAIL) >= 2


def test_json_null_strategy_under_a_key_gives_json_null() -> None:
    masker = s.masker({Entity.SSN: Strategy.NULL})
    masked, _ = scan_json({"ssn": "536-80-4398", "note": "ssn 536-80-4398"}, masker)
    assert masked == {"ssn": None, "note": "ssn [ssn]"}


def test_json_unmasked_entities_are_left_visible() -> None:
    masker = s.masker(unmasked=frozenset({Entity.EMAIL}))
    assert scan_json({"email": "a@b.io", "x": "c@d.io"}, masker) == (None, [])


def test_jsonb_binary_keeps_its_version_byte() -> None:
    body = json.dumps({"email": "alice@example.com"}).encode()
    result, found = scan(b"\x01" + body, JSONB_T, binary=True)
    assert result is not None
    assert found == [Entity.EMAIL]
    assert s.decode_jsonb(result) == {"email": "****@example.com"}
    assert scan(body, JSONB_T, binary=False)[0] == result[1:]
    assert scan(b'\x01{"a": 1}', JSONB_T, binary=True) == (None, [])


def test_json_private_key_with_escaped_newlines_is_masked() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n"
    masked, found = scan_json({"key": key, "id": 1})
    assert masked == {"key": "[secret]\n", "id": 1}
    assert found == [Entity.SECRET]


def test_json_broken_by_masking_is_replaced_whole_never_released() -> None:
    """A PEM key without END runs to the end of the text and takes the closing quote."""
    value = json.dumps({"k": "-----BEGIN PRIVATE KEY-----\nabc"}).encode()
    result, found = scan(value, JSON_T)
    assert result == b'"[masked]"'
    assert found == [Entity.SECRET]


def test_json_strings_with_escaped_quotes() -> None:
    masked, _ = scan_json({"note": 'he said "bob@example.com"', 'e"mail': "x"})
    assert masked["note"] == 'he said "****@example.com"'


def test_json_keyed_pseudonyms_match_pseudonyms_elsewhere() -> None:
    keyed, keyed_found = scan_json({"ip": "192.168.1.10"})
    other, _ = scan_json({"addr": "192.168.1.10"})
    text, _ = scan(b"192.168.1.10")
    assert text is not None
    assert keyed["ip"] == other["addr"] == text.decode()
    assert keyed_found == [Entity.IP]


@pytest.mark.parametrize(
    "note",
    [
        "card\n4111 1111 1111 1111",
        "ssn\n536-80-4398",
        "ip\t192.168.1.10",
        "call\n212-555-0143",
    ],
)
def test_json_pii_after_an_escaped_line_break_is_masked(note: str) -> None:
    masked, found = scan_json({"note": note})
    assert masked is not None
    assert found
    value = note.split(maxsplit=1)[1]  # the PII after the line break, whole
    assert value not in masked["note"]


def test_json_address_after_an_escaped_line_break_keeps_the_document() -> None:
    masked, _ = scan_json({"note": "line one\nalice@example.com", "id": 5})
    assert masked == {"note": "line one\n****@example.com", "id": 5}


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.sampled_from(SNIPPETS),
    st.text(max_size=20),
)
JSON_DOCS = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["email", "phone", "ssn", "note", "id", "name", "ip", "x y", "é"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@SETTINGS
@given(JSON_DOCS, st.booleans(), st.booleans())
def test_scanned_json_is_always_valid_json(doc: Any, ensure_ascii: bool, binary: bool) -> None:
    body = json.dumps(doc, ensure_ascii=ensure_ascii).encode()
    prefix = b"\x01" if binary else b""
    result, found = scan(prefix + body, JSONB_T, binary=binary)
    if result is None:
        assert found == []
        return
    assert result.startswith(prefix)
    json.loads(result[len(prefix) :].decode("utf-8"))
    assert found


SAFE_TEXT = st.text(string.ascii_letters + " ,.:", max_size=10)


@SETTINGS
@given(st.lists(st.tuples(SAFE_TEXT, st.sampled_from(SNIPPETS[:9])), min_size=1, max_size=4))
def test_json_strings_with_pii_never_leak_it(items: list[tuple[str, str]]) -> None:
    doc = {f"k{i}": f"{before} {pii}" for i, (before, pii) in enumerate(items)}
    masked, found = scan_json(doc)
    assert masked is not None
    assert len(found) >= len(items)
    flat = json.dumps(masked)
    for _, pii in items:
        assert pii not in flat


# --- arrays -----------------------------------------------------------------------------------


def test_text_array_scanning_in_text_format() -> None:
    value = b'{alice@example.com,"x, y",NULL,"call +1 212 555 0143",plain}'
    result, found = scan(value, TEXT_ARRAY_T)
    assert result is not None
    assert s.parse_text_array(result) == [
        b"****@example.com",
        b"x, y",
        None,
        b"call +* *** *** **43",
        b"plain",
    ]
    assert found == [Entity.EMAIL, Entity.PHONE]


def test_text_array_scanning_in_binary_format() -> None:
    value = s.encode_binary_array([b"alice@example.com", None, b"nothing here"], s.TEXT)
    result, found = scan(value, TEXT_ARRAY_T, binary=True)
    assert result is not None
    decoded = s.decode_binary_array(result)
    assert decoded.elements == [b"****@example.com", None, b"nothing here"]
    assert (decoded.dims, decoded.element_oid, decoded.has_null_flag) == ([3], s.TEXT, 1)
    assert found == [Entity.EMAIL]


def test_arrays_without_pii_are_left_alone() -> None:
    assert scan(b"{a,b,NULL}", TEXT_ARRAY_T) == (None, [])
    assert scan(s.encode_binary_array([b"a", None], s.TEXT), TEXT_ARRAY_T, binary=True) == (
        None,
        [],
    )
    assert scan(b"{}", TEXT_ARRAY_T) == (None, [])


def test_nested_and_bounded_text_arrays() -> None:
    result, _ = scan(b"[2:3][1:1]={{a@b.io},{plain}}", TEXT_ARRAY_T)
    assert result == b"[2:3][1:1]={{****@b.io},{plain}}"


def test_json_array_elements_are_scanned_as_json() -> None:
    value = s.text_array([b'{"email": "a@b.io"}', b"[1, 2]"])
    result, _ = scan(value, JSON_ARRAY_T)
    assert result is not None
    elements = s.parse_text_array(result)
    assert [json.loads(e) for e in elements if e is not None] == [{"email": "****@b.io"}, [1, 2]]


def test_a_malformed_array_is_not_scanned() -> None:
    assert scan(b"{unterminated", TEXT_ARRAY_T) == (None, [])
    assert scan(b"not an array", TEXT_ARRAY_T) == (None, [])


ARRAY_ELEMENTS = st.lists(
    st.one_of(
        st.none(),
        st.sampled_from(SNIPPETS),
        st.text(st.characters(codec="utf-8", exclude_characters="\x0b\x0c"), max_size=12),
    ),
    min_size=1,
    max_size=6,
)


@SETTINGS
@given(ARRAY_ELEMENTS)
def test_scanned_arrays_round_trip_in_both_formats(elements: list[str | None]) -> None:
    raw = [None if e is None else e.encode() for e in elements]
    want = []
    for e in raw:
        if e is None:
            want.append(None)
        else:
            masked, _ = scan(e)
            want.append(e if masked is None else masked)
    text, _ = scan(s.text_array(raw), TEXT_ARRAY_T)
    binary, _ = scan(s.encode_binary_array(raw, s.TEXT), TEXT_ARRAY_T, binary=True)
    if want == raw:
        assert text is None
        assert binary is None
        return
    assert text is not None
    assert binary is not None
    assert s.parse_text_array(text) == want
    assert s.decode_binary_array(binary).elements == want


# --- arrays module directly ---------------------------------------------------------------------


def test_map_text_leaves_unchanged_arrays_alone() -> None:
    assert arrays.map_text(b'{a,"b c",NULL}', lambda v: v) is None
    assert arrays.map_binary(s.encode_binary_array([b"a", None], s.TEXT), lambda v: v) is None


def test_map_text_can_null_an_element() -> None:
    result = arrays.map_text(b"{a,b}", lambda v: None if v == b"a" else v)
    assert result == b"{NULL,b}"
    binary = arrays.map_binary(s.encode_binary_array([b"a", b"b"], s.TEXT), lambda v: None)
    assert binary is not None
    decoded = s.decode_binary_array(binary)
    assert decoded.elements == [None, None]
    assert decoded.has_null_flag == 1


@pytest.mark.parametrize(
    "element",
    [b"", b"NULL", b"null", b"a,b", b'say "hi"', b"back\\slash", b"{x}", b" lead", b"tab\t"],
)
def test_map_text_quotes_what_needs_quoting(element: bytes) -> None:
    result = arrays.map_text(b"{x}", lambda v: element)
    assert result is not None
    assert s.parse_text_array(result) == [element]


@pytest.mark.parametrize("data", [b"{a,b", b"a,b}", b"{a}trailing", b"[1:2]{a,b}"])
def test_map_text_rejects_malformed_literals(data: bytes) -> None:
    with pytest.raises(arrays.ArrayFormatError):
        arrays.map_text(data, lambda v: v + b"!")


def test_map_binary_rejects_a_short_header() -> None:
    with pytest.raises(arrays.ArrayFormatError):
        arrays.map_binary(b"\x00\x00", lambda v: v)
