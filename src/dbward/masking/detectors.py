"""Content detectors: a pattern that finds candidates and a validator that confirms them.

Each detector has two forms of its pattern: ``prefilter``, in the syntax
Hyperscan compiles (it may over-match: it only says where to look), and
``pattern``, the exact Python regex run where the prefilter hit, whose
``value`` group is what gets masked. Patterns work on UTF-8 bytes, so a
value is never decoded unless something in it looks like PII.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from stdnum.ca import sin as ca_sin
from stdnum.es import dni as es_dni
from stdnum.fr import nir as fr_nir
from stdnum.in_ import aadhaar as in_aadhaar
from stdnum.it import codicefiscale as it_cf

from dbward.masking import validators
from dbward.masking.entities import Entity


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    entity: Entity
    prefilter: bytes
    pattern: re.Pattern[bytes]
    validate: Callable[[str], bool] | None = None
    # A candidate right after text matching this is something else (an order number).
    not_after: re.Pattern[bytes] | None = None
    shrink: bool = False  # a rejected candidate is retried without its trailing groups


def _jwt(text: str) -> bool:
    header = text.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "ico", "pdf"})


def _email(text: str) -> bool:
    local, _, domain = text.rpartition("@")
    if domain.rpartition(".")[2].lower() in _FILE_SUFFIXES:
        return False  # image@2x.png
    return not (local.startswith(".") or local.endswith(".") or ".." in text or "-." in domain)


def _high_entropy(text: str) -> bool:
    """A 40-character AWS secret mixes cases and digits; a word or a hash does not."""
    return (
        any(c.islower() for c in text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() for c in text)
    )


_NOT_PHONE = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}.*|\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})(?:[ T].*)?"
    r"|\d{3}-\d{2}-\d{4}"
    r"|\d{4}-\d{4}|\d{5}-\d{4}"  # a span of years, a ZIP+4 code
)


@functools.lru_cache(maxsize=8192)
def _phone(text: str) -> bool:
    if _NOT_PHONE.fullmatch(text):
        return False  # a date, or shaped like an SSN
    return validators.phone(text)


def _stdnum(module: object) -> Callable[[str], bool]:
    check = module.is_valid  # type: ignore[attr-defined]

    def validate(text: str) -> bool:
        return bool(check(text))

    return validate


def _rx(source: str) -> re.Pattern[bytes]:
    return re.compile(source.encode())


# Boundaries: a candidate must not continue a word, number or identifier on either side.
_L = r"(?<![\w@.+-])"
_R = r"(?![\w@-]|\.\w)"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "pem-private-key",
        Entity.SECRET,
        rb"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----",
        _rx(
            r"(?s)(?P<value>-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----"
            r"(?:.*?-----END [A-Z ]{0,20}PRIVATE KEY-----|.*))"
        ),
    ),
    Detector(
        "jwt",
        Entity.SECRET,
        rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.",
        _rx(r"(?P<value>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"),
        _jwt,
    ),
    Detector(
        "aws-access-key-id",
        Entity.SECRET,
        rb"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|AKPA)[A-Z0-9]{16}",
        _rx(
            r"(?<![A-Za-z0-9])(?P<value>(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|AKPA)"
            r"[A-Z0-9]{16})(?![A-Za-z0-9])"
        ),
    ),
    Detector(
        "aws-secret-access-key",
        Entity.SECRET,
        rb"(?i)(?:aws|secret)",
        _rx(
            r"(?i:aws|secret)[A-Za-z0-9_ .-]{0,25}[=:\"' ]+(?<![A-Za-z0-9/+])"
            r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        _high_entropy,
    ),
    Detector(
        "github-token",
        Entity.SECRET,
        rb"gh[pousr]_[A-Za-z0-9]{36}|github_pat_",
        _rx(
            r"(?<![A-Za-z0-9_])(?P<value>gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{70,})"
            r"(?![A-Za-z0-9_])"
        ),
    ),
    Detector(
        "gitlab-token",
        Entity.SECRET,
        rb"gl(?:pat|dt|rt|cbt|ptt|ft|soat)-",
        _rx(r"(?<![A-Za-z0-9_])(?P<value>gl(?:pat|dt|rt|cbt|ptt|ft|soat)-[A-Za-z0-9_-]{20,})"),
    ),
    Detector(
        "slack-token",
        Entity.SECRET,
        rb"xox[abposre]-|hooks\.slack\.com/services/",
        _rx(
            r"(?P<value>xox[abposre]-[A-Za-z0-9-]{10,}"
            r"|https?://hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+)"
        ),
    ),
    Detector(
        "stripe-key",
        Entity.SECRET,
        rb"(?:sk|rk|pk)_(?:live|test)_|whsec_",
        _rx(
            r"(?<![A-Za-z0-9_])(?P<value>(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|whsec_[A-Za-z0-9]{24,})"
        ),
    ),
    Detector(
        "card",
        Entity.CARD,
        rb"(?:[2-6]\d{3}|1800)(?:[ -]?\d){8,15}",
        _rx(_L + r"(?P<value>(?:[2-6]\d{3}|1800)(?:[ -]?\d{1,4}){2,5})" + _R),
        validators.card,
        shrink=True,
    ),
    Detector(
        "iban",
        Entity.IBAN,
        rb"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
        _rx(
            r"(?<![A-Za-z0-9])(?P<value>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)"
            r"(?![A-Za-z0-9])"
        ),
        validators.iban,
    ),
    Detector(
        "us-ssn",
        Entity.SSN,
        rb"\d{3}-\d{2}-\d{4}",
        _rx(_L + r"(?P<value>\d{3}-\d{2}-\d{4})" + _R),
        validators.us_ssn,
    ),
    Detector(
        "uk-nino",
        Entity.NATIONAL_ID,
        rb"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
        _rx(r"(?<![A-Za-z0-9])(?P<value>[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D])(?![A-Za-z0-9])"),
        validators.uk_nino,
    ),
    Detector(
        "es-dni",
        Entity.NATIONAL_ID,
        rb"\d{8}-?[A-Z]",
        _rx(r"(?<![\w-])(?P<value>\d{8}-?[A-Z])(?![A-Za-z0-9])"),
        _stdnum(es_dni),
    ),
    Detector(
        "it-codice-fiscale",
        Entity.NATIONAL_ID,
        rb"[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]",
        _rx(r"(?<![A-Za-z0-9])(?P<value>[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z])(?![A-Za-z0-9])"),
        _stdnum(it_cf),
    ),
    Detector(
        "fr-nir",
        Entity.NATIONAL_ID,
        rb"[12] ?\d{2} ?\d{2} ?[0-9AB]{2} ?\d{3} ?\d{3} ?\d{2}",
        _rx(_L + r"(?P<value>[12] ?\d{2} ?\d{2} ?[0-9AB]{2} ?\d{3} ?\d{3} ?\d{2})" + _R),
        _stdnum(fr_nir),
    ),
    Detector(
        "ca-sin",
        Entity.NATIONAL_ID,
        rb"\d{3}[ -]\d{3}[ -]\d{3}",
        _rx(_L + r"(?P<value>\d{3}[ -]\d{3}[ -]\d{3})" + _R),
        _stdnum(ca_sin),
    ),
    Detector(
        "in-aadhaar",
        Entity.NATIONAL_ID,
        rb"[2-9]\d{3} \d{4} \d{4}",
        _rx(_L + r"(?P<value>[2-9]\d{3} \d{4} \d{4})" + _R),
        _stdnum(in_aadhaar),
    ),
    Detector(
        "email",
        Entity.EMAIL,
        rb"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.[A-Za-z0-9.-]*[A-Za-z]",
        _rx(
            r"(?<![A-Za-z0-9._%+-])(?P<value>[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
            r"(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24})(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
        ),
        _email,
    ),
    Detector(
        "ipv4",
        Entity.IP,
        rb"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
        _rx(r"(?<![\w.-])(?P<value>[1-9]\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w-]|\.\d)"),
        validators.ip_address,
    ),
    Detector(
        "ipv6",
        Entity.IP,
        rb"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:?[0-9A-Fa-f]{0,4}",
        _rx(
            r"(?<![\w:.])(?P<value>(?:[0-9A-Fa-f]{1,4}|:)?(?::[0-9A-Fa-f]{0,4}){2,7}"
            r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?)(?![\w:])"
        ),
        validators.ip_address,
    ),
    Detector(
        "phone",
        Entity.PHONE,
        rb"(?:\+|\(|\d)[\d ().-]{5,20}\d",
        _rx(
            # Digit runs are taken whole (possessive): a long run of digits and dashes is
            # never re-split between groups, which took milliseconds per value.
            r"(?<![\w.+/-])(?P<value>(?:\+|00)?\(?\d{1,4}+\)?(?:[ .-]{0,2}\(?\d{1,5}+\)?){1,6}"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?)(?![\w]|[.-]\d|/)"
        ),
        _phone,
        re.compile(
            rb"(?i)(?:\bid|order|\bref|invoice|ticket|sku|account|acct|serial|batch|count|#)"
            rb"\s*[:=#]?\s*$"
        ),
        shrink=True,
    ),
)
"""In priority order: where two detections overlap, the earlier detector wins."""
