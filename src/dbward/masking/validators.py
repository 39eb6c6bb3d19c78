"""Checks that tell real identifiers from look-alikes (check digits, reserved ranges)."""

from __future__ import annotations

import functools
import ipaddress
import re

import phonenumbers

_NON_DIGITS = re.compile(r"\D")


def digits(text: str) -> str:
    return _NON_DIGITS.sub("", text)


def luhn(number: str) -> bool:
    """12 to 19 digits whose Luhn checksum is zero."""
    if not 12 <= len(number) <= 19 or not number.isdigit() or len(set(number)) == 1:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


_CARD_PREFIXES = ("2", "3", "4", "5", "6", "1800")
_MAESTRO = ("50", "56", "57", "58", "6")


_CARD_LENGTHS: tuple[tuple[str, frozenset[int]], ...] = (
    ("34", frozenset({15})), ("37", frozenset({15})), ("1800", frozenset({15})),
    ("2131", frozenset({15})),
    ("35", frozenset(range(16, 20))), ("30", frozenset(range(14, 20))),
    ("36", frozenset(range(14, 20))), ("38", frozenset(range(14, 20))),
    ("39", frozenset(range(14, 20))), ("4", frozenset({13, 16, 19})),
    ("2", frozenset({16})), ("51", frozenset({16})), ("52", frozenset({16})),
    ("53", frozenset({16})), ("54", frozenset({16})), ("55", frozenset({16})),
)  # fmt: skip


def card(text: str) -> bool:
    """Luhn plus an issuer prefix: 2 and 5 Mastercard, 3 Amex/Diners/JCB, 4 Visa, 6
    Discover/Maestro, 1800 JCB; 12 digits only for Maestro."""
    number = digits(text)
    if len(number) == 12 and not number.startswith(_MAESTRO):
        return False
    for prefix, lengths in _CARD_LENGTHS:  # the most specific prefix first
        if number.startswith(prefix):
            if len(number) not in lengths:
                return False  # e.g. 18 digits starting 37: not an Amex (an IBAN's digits)
            break
    return number.startswith(_CARD_PREFIXES) and luhn(number)


def us_ssn(text: str) -> bool:
    """AAA-GG-SSSS with the ranges the SSA never issues rejected."""
    number = digits(text)
    if len(number) != 9:
        return False
    area, group, serial = int(number[:3]), int(number[3:5]), int(number[5:])
    if area in (0, 666) or area >= 900 or group == 0 or serial == 0:
        return False
    return number not in ("078051120", "219099999", "123456789")  # well-known fakes


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban(text: str) -> bool:
    """Country code, its registered length, and the ISO 7064 mod-97 check."""
    compact = re.sub(r"[\s-]", "", text).upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino(text: str) -> bool:
    """UK National Insurance number: two letters, six digits, a suffix A-D."""
    compact = re.sub(r"\s", "", text).upper()
    if not re.fullmatch(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]", compact):
        return False
    return compact[:2] not in _NINO_BAD_PREFIXES


def ip_address(text: str) -> bool:
    """A routable-looking IPv4/IPv6 address; version-like 1.2.3.4 strings need four octets."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.version == 4:
        return not (address.is_unspecified or str(address) == "255.255.255.255")
    return not address.is_unspecified and text.count(":") >= 2


_REGIONS = ("US", "GB", "DE", "FR", "IT", "ES")
_TRUNK_REGIONS = ("GB", "DE", "FR", "IT", "ES")  # a leading 0 is never a NANP number
_AREA_CODE = re.compile(r"(?:\+\d{1,3}\s?)?\(\d")
_EXTENSION = re.compile(r"\s*(?:x|ext\.?)\s*\d{1,6}$", re.IGNORECASE)


def _parses(text: str, region: str | None, *, valid: bool) -> bool:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(parsed) if valid else phonenumbers.is_possible_number(parsed)
    )


def phone(text: str) -> bool:
    """A phone number, judged by libphonenumber as strictly as its formatting is weak.

    Written internationally (``+``, ``00``) or with an area code in parentheses
    or an extension, a number only has to be possible (fictional ranges such as
    555-01xx count: they are still someone's test data); grouped with spaces,
    dashes or dots, or written as bare digits, it must be a valid number of a
    common region. A single dot makes a decimal amount, not a phone number.
    """
    body = _EXTENSION.sub("", text.strip())
    count = len(digits(body))
    if not 7 <= count <= 15:
        return False
    separators = set(re.findall(r"[\s().-]", body))
    if separators == {"."} and body.count(".") < 2:
        return False
    if "." in separators and " " in separators:
        return False  # decimals in a list (40.7128 -74.0060), not a phone number
    if body.startswith("00"):
        body = "+" + body[2:]
    if body.startswith("+"):
        return len(set(digits(body))) > 2 and _possible_international(body)
    if len(set(digits(body))) <= 2:
        return False  # 000 000 0000, 555-5555: placeholders
    if "(" in body and not _AREA_CODE.match(body):
        return False  # "12 (212) 555-0143": the parentheses are not after a country code
    strong = "(" in body or len(body) < len(text.strip())
    if not separators:
        if body.startswith("3") and len(body) in (10, 11):  # an Italian mobile
            return _parses(body, "IT", valid=True)
        if not _bare_national(body):
            return False
    elif not strong:
        groups = re.findall(r"\d+", body)
        nanp_long = groups[0] == "1" and count == 11  # 1-800-555-0199
        french = body.startswith("0") and count == 10  # 01 42 68 53 00
        short_groups = max(map(len, groups)) < 3 and not french
        if short_groups or (len(groups[0]) < 2 and not nanp_long) or count > 12:
            return False  # sizes 12 14 16, "qty 3 212-...": not how numbers are grouped
        if count < 10 and not body.startswith("0"):
            return False  # 10.0.19041.1: too short to dial without a trunk prefix
    if body.startswith("(00"):  # "(00429) 620960": an area code with its trunk 0 doubled
        body = "(" + body[2:]
    regions = _TRUNK_REGIONS if body.lstrip("(").startswith("0") else _REGIONS
    return any(_parses(body, region, valid=not strong) for region in regions)


def _possible_international(body: str) -> bool:
    """What libphonenumber's is_possible_number says of ``+CC ...``, by its country
    codes and lengths alone, without its (slow) parser: a known country code, then 4 to
    13 national digits (a "(0)" trunk prefix not counted)."""
    number = digits(body)
    if number.startswith("0"):
        return False  # no country code starts with 0 (a GTIN-14 with leading zeros)
    for size in (1, 2, 3):
        lengths = _possible_lengths(int(number[:size]))
        if lengths:
            national = number[size:]
            if "(0)" in body and national.startswith("0"):
                national = national[1:]
            return len(national) in lengths
    return False


@functools.lru_cache(maxsize=512)
def _possible_lengths(country_code: int) -> frozenset[int]:
    """The national number lengths libphonenumber's metadata allows after a country code."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions:
        return frozenset()
    lengths: set[int] = set()
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, region
        )
        if metadata is not None and metadata.general_desc is not None:
            lengths.update(metadata.general_desc.possible_length or ())
    return frozenset(lengths)


def _bare_national(number: str) -> bool:
    """Bare digits count only in a national shape: a trunk 0 (Europe), an Italian
    mobile (3, 9-10 digits), or a NANP number (area and exchange start 2-9)."""
    if number.startswith("0"):
        return 9 <= len(number) <= 11
    if number.startswith("3") and len(number) == 9:
        return True
    return len(number) == 10 and number[0] in "23456789" and number[3] in "23456789"
