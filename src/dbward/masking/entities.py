"""What dbward masks: kinds of personal data and secrets, and how each is masked."""

from __future__ import annotations

from enum import StrEnum


class Entity(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    SSN = "ssn"
    IBAN = "iban"
    IP = "ip"
    DOB = "dob"
    PERSON_NAME = "person_name"
    ADDRESS = "address"
    NATIONAL_ID = "national_id"
    SECRET = "secret"  # noqa: S105 (the name of a kind of data, not a secret)
    PASSWORD = "password"  # noqa: S105


class Strategy(StrEnum):
    REDACT = "redact"  # a fixed mask: nothing of the value remains
    PARTIAL = "partial"  # keep what identifies little: a card's last four, an email's domain
    PSEUDONYM = "pseudonym"  # keyed HMAC: the same input gives the same token
    NULL = "null"  # SQL NULL


DEFAULT_STRATEGIES: dict[Entity, Strategy] = {
    Entity.EMAIL: Strategy.PARTIAL,
    Entity.PHONE: Strategy.PARTIAL,
    Entity.CARD: Strategy.PARTIAL,
    Entity.SSN: Strategy.REDACT,
    Entity.IBAN: Strategy.PARTIAL,
    Entity.IP: Strategy.PSEUDONYM,
    Entity.DOB: Strategy.REDACT,
    Entity.PERSON_NAME: Strategy.PSEUDONYM,
    Entity.ADDRESS: Strategy.REDACT,
    Entity.NATIONAL_ID: Strategy.REDACT,
    Entity.SECRET: Strategy.REDACT,
    Entity.PASSWORD: Strategy.REDACT,
}
"""What happens to each entity with no policy: enough left to debug, nothing to identify."""
