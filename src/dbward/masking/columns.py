"""Classifying a column by its name and its table: what it holds, or that it is free text.

Names are split into words (``billingEmail`` and ``billing_email`` both give
``billing``, ``email``); the last word decides most cases, so ``token`` and
``reset_token`` are secrets but ``token_count`` is not. Some words mean PII
only in a table about people: ``name`` in ``customers`` is a person's name,
in ``products`` it is not.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from dbward.masking.entities import Entity

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def words(name: str) -> tuple[str, ...]:
    return tuple(w for w in _SPLIT.split(_CAMEL.sub("_", name).lower()) if w)


# Whole (joined) names and last words that say what a column holds, in any table.
_EXACT: dict[str, Entity] = {
    "email": Entity.EMAIL, "e_mail": Entity.EMAIL, "mail": Entity.EMAIL,
    "email_address": Entity.EMAIL, "emailaddress": Entity.EMAIL,
    "phone": Entity.PHONE, "telephone": Entity.PHONE, "mobile": Entity.PHONE,
    "msisdn": Entity.PHONE,
    "tel": Entity.PHONE, "fax": Entity.PHONE, "cell": Entity.PHONE, "cellphone": Entity.PHONE,
    "phone_number": Entity.PHONE, "phonenumber": Entity.PHONE, "mobile_number": Entity.PHONE,
    "card_number": Entity.CARD, "cardnumber": Entity.CARD, "credit_card": Entity.CARD,
    "creditcard": Entity.CARD, "cc_number": Entity.CARD, "ccnumber": Entity.CARD,
    "pan": Entity.CARD, "card": Entity.CARD, "card_num": Entity.CARD, "cc": Entity.CARD,
    "card_no": Entity.CARD, "credit_card_number": Entity.CARD,
    "ssn": Entity.SSN, "social_security_number": Entity.SSN, "social_security": Entity.SSN,
    "iban": Entity.IBAN, "bank_account": Entity.IBAN, "account_number": Entity.IBAN,
    "ip": Entity.IP, "ip_address": Entity.IP, "ipaddress": Entity.IP, "ip_addr": Entity.IP,
    "remote_addr": Entity.IP, "client_ip_address": Entity.IP,
    "ipv4_address": Entity.IP, "ipv6_address": Entity.IP,
    "client_ip": Entity.IP, "ipv4": Entity.IP, "ipv6": Entity.IP,
    "dob": Entity.DOB, "date_of_birth": Entity.DOB, "birth_date": Entity.DOB,
    "birthdate": Entity.DOB, "birthday": Entity.DOB, "born_on": Entity.DOB, "born": Entity.DOB,
    "birth_day": Entity.DOB,
    "first_name": Entity.PERSON_NAME, "firstname": Entity.PERSON_NAME,
    "last_name": Entity.PERSON_NAME, "lastname": Entity.PERSON_NAME,
    "full_name": Entity.PERSON_NAME, "fullname": Entity.PERSON_NAME,
    "given_name": Entity.PERSON_NAME, "family_name": Entity.PERSON_NAME,
    "middle_name": Entity.PERSON_NAME, "surname": Entity.PERSON_NAME,
    "maiden_name": Entity.PERSON_NAME, "display_name": Entity.PERSON_NAME,
    "contact_name": Entity.PERSON_NAME, "customer_name": Entity.PERSON_NAME,
    "person_name": Entity.PERSON_NAME, "patient_name": Entity.PERSON_NAME,
    "employee_name": Entity.PERSON_NAME, "cardholder_name": Entity.PERSON_NAME,
    "address": Entity.ADDRESS, "street": Entity.ADDRESS, "street_address": Entity.ADDRESS,
    "address_line": Entity.ADDRESS, "address_line1": Entity.ADDRESS,
    "address_line2": Entity.ADDRESS, "address1": Entity.ADDRESS, "address2": Entity.ADDRESS,
    "home_address": Entity.ADDRESS, "postal_address": Entity.ADDRESS,
    "mailing_address": Entity.ADDRESS, "billing_address": Entity.ADDRESS,
    "shipping_address": Entity.ADDRESS, "postcode": Entity.ADDRESS, "post_code": Entity.ADDRESS,
    "postal_code": Entity.ADDRESS, "zip": Entity.ADDRESS, "zipcode": Entity.ADDRESS,
    "zip_code": Entity.ADDRESS,
    "nino": Entity.NATIONAL_ID, "ni_number": Entity.NATIONAL_ID,
    "national_insurance_number": Entity.NATIONAL_ID, "national_id": Entity.NATIONAL_ID,
    "passport": Entity.NATIONAL_ID, "passport_number": Entity.NATIONAL_ID,
    "passport_no": Entity.NATIONAL_ID, "tax_id": Entity.NATIONAL_ID, "tin": Entity.NATIONAL_ID,
    "vat_id": Entity.NATIONAL_ID, "driver_license": Entity.NATIONAL_ID,
    "drivers_license": Entity.NATIONAL_ID, "driving_licence": Entity.NATIONAL_ID,
    "license_number": Entity.NATIONAL_ID, "sin": Entity.NATIONAL_ID, "nir": Entity.NATIONAL_ID,
    "dni": Entity.NATIONAL_ID, "nif": Entity.NATIONAL_ID, "aadhaar": Entity.NATIONAL_ID,
    "codice_fiscale": Entity.NATIONAL_ID, "bsn": Entity.NATIONAL_ID,
    "personnummer": Entity.NATIONAL_ID, "national_identifier": Entity.NATIONAL_ID,
}  # fmt: skip

# Last words that make a column a secret (and words that, before them, do not).
_SECRET_LAST = frozenset(
    {"secret", "token", "apikey", "api_key", "passphrase", "private_key", "privatekey",
     "credentials", "credential", "access_key", "secret_key", "client_secret", "otp_secret",
     "totp_secret", "session_key", "signing_key", "encryption_key", "auth_key", "bearer"}
)  # fmt: skip
_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passcode", "pin"})
_HASH_WORDS = frozenset({"hash", "hashed", "digest", "encrypted", "crypt", "salt", "enc"})
_NOT_SECRET_LAST = frozenset(
    {"count", "counts", "id", "ids", "type", "types", "expires", "expiry", "expires_at",
     "expired", "length", "len", "size", "used", "limit", "at", "on", "date", "time", "name",
     "version", "enabled", "required", "changed", "updated", "created", "policy", "hint",
     "scope", "scopes", "prefix", "last4", "kind", "status", "state"}
)  # fmt: skip

# In a table about people, these words alone mean a person's name or address.
_PERSON_TABLES = frozenset(
    {"user", "users", "customer", "customers", "client", "clients", "person", "persons",
     "people", "employee", "employees", "staff", "member", "members", "patient", "patients",
     "contact", "contacts", "account", "accounts", "student", "students", "profile",
     "profiles", "author", "authors", "applicant", "applicants", "subscriber", "subscribers",
     "guest", "guests", "passenger", "passengers", "tenant", "tenants", "lead", "leads",
     "candidate", "candidates", "driver", "drivers", "owner", "owners", "teacher", "teachers",
     "recipient", "recipients", "beneficiary", "beneficiaries", "signup", "signups"}
)  # fmt: skip
_PERSON_WORDS: dict[str, Entity] = {
    "name": Entity.PERSON_NAME, "forename": Entity.PERSON_NAME, "city": Entity.ADDRESS,
    "line1": Entity.ADDRESS, "line2": Entity.ADDRESS,
}  # fmt: skip
_PERSON_ALONE = {
    "first": Entity.PERSON_NAME, "last": Entity.PERSON_NAME, "birth": Entity.DOB,
    "born": Entity.DOB,
}  # fmt: skip
_FLAG_WORDS = frozenset({"is", "has", "uses", "use", "needs", "requires", "allow", "show"})

# Columns of free text: scanned for PII inside the text whatever their type.
_FREE_TEXT = frozenset(
    {"note", "notes", "comment", "comments", "description", "body", "message", "messages",
     "bio", "remarks", "remark", "details", "detail", "text", "content", "summary", "memo",
     "feedback", "review", "reason", "payload", "data", "metadata", "meta", "attributes",
     "properties", "props", "extra", "document", "doc", "json", "info", "context", "log",
     "logs", "event", "request", "response", "params", "raw", "annotation", "annotations"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Classification:
    entity: Entity | None  # the column holds this: every value is masked
    free_text: bool  # the column holds text that may contain PII: scanned


NOTHING = Classification(None, False)
FREE_TEXT = Classification(None, True)


def _secret(parts: tuple[str, ...]) -> Entity | None:
    last = parts[-1]
    joined = "_".join(parts)
    if last in _NOT_SECRET_LAST:
        return None
    if last in _PASSWORD_WORDS:
        return Entity.PASSWORD
    if last in _HASH_WORDS and len(parts) > 1 and parts[-2] in _PASSWORD_WORDS:
        return Entity.PASSWORD
    if any(joined.endswith(s) for s in _SECRET_LAST):
        return Entity.SECRET
    if parts[0] in ("hashed", "encrypted") and len(parts) > 1 and parts[1] in _PASSWORD_WORDS:
        return Entity.PASSWORD
    if last in _HASH_WORDS and len(parts) > 1:
        return _secret(parts[:-1])
    return None


@functools.lru_cache(maxsize=4096)
def classify(column: str, table: str | None = None) -> Classification:
    """What the column ``column`` of ``table`` (unqualified; None if unknown) holds."""
    parts = words(column)
    if not parts:
        return NOTHING
    if parts[0] in _FLAG_WORDS and len(parts) > 1:
        return NOTHING  # is_secret, has_token: a flag about it, not the thing
    joined = "_".join(parts)
    entity = _EXACT.get(joined) or _secret(parts)
    if entity is None and len(parts) > 1:
        entity = _EXACT.get("_".join(parts[-2:])) or _EXACT.get(parts[-1])
    if (
        entity is None
        and table is not None
        and words(table)[-1:]
        and (words(table)[-1] in _PERSON_TABLES)
    ):
        entity = _PERSON_WORDS.get(parts[-1])
        if entity is None and len(parts) == 1:
            entity = _PERSON_ALONE.get(parts[0])
    if entity is not None:
        return Classification(entity, False)
    if parts[-1] in _FREE_TEXT or joined in _FREE_TEXT:
        return FREE_TEXT
    return NOTHING
