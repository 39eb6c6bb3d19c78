"""The validators that tell real identifiers from look-alikes (dbward.masking.validators)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbward.masking import validators


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body + digit`` Luhn-valid (independent implementation)."""
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str(-total % 10)


# --- digits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [("4111 1111-1111.1111", "4111111111111111"), ("+1 (212) 555-0143", "12125550143"), ("", "")],
)
def test_digits_keeps_only_digits(text: str, want: str) -> None:
    assert validators.digits(text) == want


# --- luhn ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4222222222222",  # 13
        "3056930902590" + "4",  # 14
        "6212345678900000003",  # 19
        "00" + "79927398713",  # the textbook number, with Luhn-neutral leading zeros
    ],
)
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert validators.luhn(number)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("4111111111111112", "check digit off by one"),
        ("4111111111111121", "two digits swapped"),
        ("1234567890", "too short for a card (10 digits)"),
        ("79927398713", "valid Luhn but only 11 digits"),
        ("41111111111111111111", "20 digits: longer than any card"),
        ("4111 1111 1111 1111", "luhn() takes digits only; card() strips separators"),
        ("411111111111111a", "a letter"),
        ("0000000000000000", "one repeated digit is a placeholder"),
        ("5555555555555555", "one repeated digit is a placeholder"),
        ("", "empty"),
    ],
)
def test_luhn_rejects(number: str, why: str) -> None:
    assert not validators.luhn(number), why


@settings(max_examples=300, deadline=None)
@given(st.text("0123456789", min_size=12, max_size=18))
def test_luhn_accepts_exactly_one_check_digit(body: str) -> None:
    if len(set(body)) == 1:
        body = "1" + body[1:] if body[0] != "1" else "2" + body[1:]
    valid = [d for d in "0123456789" if validators.luhn(body + d)]
    assert valid == [luhn_digit(body)]


# --- card ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500 0000 0000 0004",
        "2221 0000 0000 0009",
        "3782 822463 10005",
        "6011 0009 9013 9424",
        "3530 1113 3330 0000",
        "3056 9309 0259 04",
        "4222222222222",
    ],
)
def test_card_accepts_issuer_prefix_and_luhn(text: str) -> None:
    assert validators.card(text)


@pytest.mark.parametrize("first", ["0", "7", "8", "9"])
def test_card_rejects_numbers_no_issuer_uses(first: str) -> None:
    body = first + "11111111111111"
    number = body + luhn_digit(body)
    assert validators.luhn(number)
    assert not validators.card(number)


def test_card_rejects_a_luhn_valid_number_starting_with_1_that_is_not_jcb() -> None:
    body = "123456789012345"
    number = body + luhn_digit(body)
    assert validators.luhn(number)
    assert not validators.card(number)


def test_card_rejects_luhn_invalid() -> None:
    assert not validators.card("4111 1111 1111 1112")


# --- US SSN -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["536-80-4398", "001-01-0001", "899-99-9999", "665-12-3456"])
def test_ssn_accepts(text: str) -> None:
    assert validators.us_ssn(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("000-12-3456", "area 000"),
        ("666-12-3456", "area 666"),
        ("900-12-3456", "area 900"),
        ("999-99-9999", "area 999"),
        ("536-00-4398", "group 00"),
        ("536-80-0000", "serial 0000"),
        ("078-05-1120", "Woolworth wallet"),
        ("219-09-9999", "advertised sample"),
        ("123-45-6789", "well-known fake"),
        ("536-80-439", "eight digits"),
        ("536-80-43981", "ten digits"),
    ],
)
def test_ssn_rejects(text: str, why: str) -> None:
    assert not validators.us_ssn(text), why


def test_ssn_ignores_separators() -> None:
    assert validators.us_ssn("536804398")
    assert validators.us_ssn("536 80 4398")


# --- IBAN ---------------------------------------------------------------------------------

VALID_IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "ES9121000418450200051332",
    "BE68539007547034",
    "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S",
    "CH9300762011623852957",
]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_iban_accepts_compact_spaced_lower_and_dashed(iban: str) -> None:
    spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    assert validators.iban(iban)
    assert validators.iban(spaced)
    assert validators.iban(iban.lower())
    assert validators.iban(spaced.replace(" ", "-"))


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_iban_rejects_any_single_changed_check_digit(iban: str) -> None:
    for digit in "0123456789":
        if digit != iban[3]:
            assert not validators.iban(iban[:3] + digit + iban[4:])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("DE8937040044053201300", "one short"),
        ("DE893704004405320130000", "one too long"),
        ("XX89370400440532013000", "unknown country"),
        ("DE00370400440532013000", "check digits 00"),
        ("DE89370400440532013.00", "a character that is not alphanumeric"),
        ("", "empty"),
    ],
)
def test_iban_rejects(text: str, why: str) -> None:
    assert not validators.iban(text), why


# --- UK NINO ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["AB123456C", "AB 12 34 56 C", "ab123456c", "JG103759A", "ZA000000D"]
)
def test_nino_accepts(text: str) -> None:
    assert validators.uk_nino(text)


@pytest.mark.parametrize("prefix", ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"])
def test_nino_rejects_reserved_prefixes(prefix: str) -> None:
    assert not validators.uk_nino(f"{prefix}123456A")


@pytest.mark.parametrize("first", list("DFIQUV"))
def test_nino_rejects_letters_never_used_first(first: str) -> None:
    assert not validators.uk_nino(f"{first}A123456A")


@pytest.mark.parametrize("second", list("DFIOQUV"))
def test_nino_rejects_letters_never_used_second(second: str) -> None:
    assert not validators.uk_nino(f"A{second}123456A")


@pytest.mark.parametrize("text", ["AB123456E", "AB12345C", "AB1234567C", "A1123456C"])
def test_nino_rejects_bad_shapes(text: str) -> None:
    assert not validators.uk_nino(text)


# --- IP addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["192.168.1.10", "8.8.8.8", "1.2.3.4", "127.0.0.1", "2001:db8::1", "::1", "fe80::"],
)
def test_ip_accepts(text: str) -> None:
    assert validators.ip_address(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast / netmask"),
        ("::", "unspecified IPv6"),
        ("256.1.1.1", "octet out of range"),
        ("1.2.3", "three parts"),
        ("1.2.3.4.5", "five parts"),
        ("192.168.001.001", "leading zeros"),
        ("12:34:56", "a time"),
        ("hello", "a word"),
    ],
)
def test_ip_rejects(text: str, why: str) -> None:
    assert not validators.ip_address(text), why


# --- phone --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "+1 212 555 0143",
        "+12125550143",
        "+44 20 7946 0958",
        "+49 30 12345678",
        "+33 1 42 68 53 00",
        "+81 3-1234-5678",
        "(212) 555-0143",
        "212-555-0143",
        "020 7946 0958",
        "07911 123456",
        "030 12345678",
        "01 42 68 53 00",
        "+1-212-555-0143x1234",
    ],
)
def test_phone_accepts(text: str) -> None:
    assert validators.phone(text)


@pytest.mark.parametrize(
    "text",
    ["+1-212-555-0143x12345", "001-212-555-0143x455", "(212) 555-0143 ext. 123456"],
)
def test_phone_extension_digits_do_not_count_towards_the_length_limit(text: str) -> None:
    assert validators.phone(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("123456", "six digits: too short"),
        ("+1 212 555", "too short"),
        ("+1234567890123456", "sixteen digits: longer than E.164 allows"),
        ("hello", "no digits"),
        ("", "empty"),
        ("+999 1234 5678", "no country uses +999"),
    ],
)
def test_phone_rejects(text: str, why: str) -> None:
    assert not validators.phone(text), why


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_validators_never_raise(text: str) -> None:
    for check in (
        validators.luhn,
        validators.card,
        validators.us_ssn,
        validators.iban,
        validators.uk_nino,
        validators.ip_address,
        validators.phone,
    ):
        assert check(text) in (True, False)
