"""Checks that tell real identifiers from look-alikes (check digits, reserved ranges)."""

from __future__ import annotations

import ipaddress
import re

import phonenumbers

_NON_DIGITS = re.compile(r"\D")


def digits(text: str) -> str:
    return _NON_DIGITS.sub("", text)


def luhn(number: str) -> bool:
    """A payment card number: 13 to 19 digits whose Luhn checksum is zero."""
    if not 13 <= len(number) <= 19 or not number.isdigit() or len(set(number)) == 1:
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


_CARD_PREFIXES = ("2", "3", "4", "5", "6")


def card(text: str) -> bool:
    """Luhn plus an issuer prefix (2 Mastercard, 3 Amex/Diners/JCB, 4 Visa, 5, 6)."""
    number = digits(text)
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


def phone(text: str) -> bool:
    """A number that libphonenumber considers valid: international with +, else as US/GB."""
    stripped = text.strip()
    count = len(digits(stripped))
    if not 7 <= count <= 15:
        return False
    regions = (None,) if stripped.startswith("+") else ("US", "GB", "DE", "FR")
    for region in regions:
        try:
            parsed = phonenumbers.parse(stripped, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return True
    return False
