"""Turning a piece of text into its masked form: redact, partial, pseudonym.

These work on the text of one detected value (a whole column value or a span
inside free text) and return text of the same general shape; keeping the
result valid for the column's type is :mod:`dbward.masking.values`' job. NULL
is not here: it replaces a whole value and is decided there too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable

from dbward.masking.entities import Entity, Strategy

_ALNUM = re.compile(r"[A-Za-z0-9]")
_DIGIT = re.compile(r"\d")


def label(entity: Entity) -> str:
    """What a redacted value reads as: it says what was there, nothing of it."""
    return _LABELS[entity]


_LABELS = {entity: f"[{entity.value}]" for entity in Entity}


class Pseudonymizer:
    """Keyed HMAC-SHA256: the same input and key give the same token, joins keep working."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        self._key = key

    @property
    def key(self) -> bytes:
        return self._key

    def digest(self, entity: Entity, text: str) -> bytes:
        message = entity.value.encode() + b"\x00" + _normal(entity, text).encode()
        return hmac.digest(self._key, message, hashlib.sha256)

    def token(self, entity: Entity, text: str) -> str:
        digest = self.digest(entity, text)
        if entity is Entity.EMAIL:
            return f"u{digest[:5].hex()}@masked.invalid"
        if entity is Entity.PERSON_NAME:
            return f"Person {digest[:4].hex().upper()}"
        if entity is Entity.IP:
            return _pseudo_ip(text, digest)
        if entity in (Entity.PHONE, Entity.CARD, Entity.SSN) or _mostly_digits(text):
            return _same_shape_digits(text, digest)
        return f"{entity.value}_{digest[:6].hex()}"


def _normal(entity: Entity, text: str) -> str:
    """One form per value: formatting and case do not change a pseudonym."""
    if entity in (Entity.PHONE, Entity.CARD, Entity.SSN):
        return re.sub(r"\D", "", text)
    if entity in (Entity.EMAIL, Entity.IBAN, Entity.NATIONAL_ID):
        return re.sub(r"\s", "", text).lower()
    return text.strip()


def _mostly_digits(text: str) -> bool:
    count = sum(c.isdigit() for c in text)
    return count > 0 and count * 2 >= len(text)


def _same_shape_digits(text: str, digest: bytes) -> str:
    """Every digit replaced by one drawn from the digest; separators and letters kept."""
    stream = iter(str(int.from_bytes(digest, "big")))
    first = True

    def digit(match: re.Match[str]) -> str:
        nonlocal first
        value = next(stream, "7")
        if first and value == "0":
            value = "5"  # no leading zero: an integer stays as long as it was
        first = False
        return value

    return _DIGIT.sub(digit, text)


def _pseudo_ip(text: str, digest: bytes) -> str:
    try:
        version = ipaddress.ip_address(text.split("/")[0]).version
    except ValueError:
        version = 4
    if version == 4:
        return str(ipaddress.IPv4Address(bytes([10]) + digest[:3]))
    return str(ipaddress.IPv6Address(bytes([0xFD]) + digest[:15]))


def _keep_last(text: str, keep: int) -> str:
    """Letters and digits but the last ``keep`` become '*'; separators stay."""
    cut = len(text)
    kept = 0
    while cut > 0 and kept < keep:
        cut -= 1
        if text[cut].isalnum():
            kept += 1
    return _ALNUM.sub("*", text[:cut]) + text[cut:]


def _partial_ip(text: str) -> str:
    address, _, prefix = text.partition("/")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return _keep_last(text, 0)
    if parsed.version == 4:
        network = ipaddress.ip_network(f"{parsed}/16", strict=False)
    else:
        network = ipaddress.ip_network(f"{parsed}/48", strict=False)
    masked = str(network.network_address)
    return f"{masked}/{prefix}" if prefix else masked


def _partial_email(text: str) -> str:
    return "****@" + text.rpartition("@")[2] if "@" in text else label(Entity.EMAIL)


def _partial_dob(text: str) -> str:
    year = re.search(r"\b(1[89]|20)\d\d\b", text)
    return f"{year.group(0)}-01-01" if year else label(Entity.DOB)


def _partial_name(text: str) -> str:
    return " ".join(w[0] + "." for w in text.split() if w) or label(Entity.PERSON_NAME)


def _partial_secret(text: str) -> str:
    prefix = re.match(r"[A-Za-z]{2,6}[_-]", text)
    return (prefix.group(0) if prefix else "") + "****"


_PARTIAL: dict[Entity, Callable[[str], str]] = {
    Entity.EMAIL: _partial_email,
    Entity.CARD: lambda text: _keep_last(text, 4),
    Entity.SSN: lambda text: _keep_last(text, 4),
    Entity.IBAN: lambda text: text[:2] + _keep_last(text, 4)[2:],
    Entity.PHONE: lambda text: _keep_last(text, 2),
    Entity.IP: _partial_ip,
    Entity.DOB: _partial_dob,
    Entity.PERSON_NAME: _partial_name,
    Entity.NATIONAL_ID: lambda text: _keep_last(text, 2 if len(text) >= 6 else 0),
    Entity.SECRET: _partial_secret,
}


def partial(entity: Entity, text: str) -> str:
    """Keep what identifies little: an email's domain, a card's last four, ..."""
    keep = _PARTIAL.get(entity)
    return keep(text) if keep is not None else label(entity)


def mask_text(entity: Entity, strategy: Strategy, text: str, pseudonyms: Pseudonymizer) -> str:
    """``text`` masked as ``strategy`` says (NULL is decided by the caller: redacted here)."""
    if strategy is Strategy.PARTIAL:
        return partial(entity, text)
    if strategy is Strategy.PSEUDONYM:
        return pseudonyms.token(entity, text)
    return label(entity)
