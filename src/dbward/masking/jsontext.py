"""Masking inside JSON text, keeping it valid JSON and leaving the rest as it was written.

Two passes over the raw text: values under keys that name PII (``"email":``,
``"ssn":``) are replaced whole; then the content scanner masks PII found
anywhere else, inside strings. Replacements never contain a quote, a
backslash or a control character, so the text stays valid; the result is
checked, and a value that could not be masked in place is replaced whole.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from dbward.masking.columns import classify
from dbward.masking.entities import Strategy

if TYPE_CHECKING:
    from dbward.masking.values import Found, ValueMasker

_PAIR = re.compile(rb'"(?P<key>[^"\\]{1,64})"\s*:\s*(?P<value>"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*)')


def unquoted(text: str) -> str:
    """A JSON string value's text (a whole value is masked as what it says); other JSON
    values as written."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def whole(masked: str) -> bytes:
    """A whole JSON value replaced by the masked text, as a JSON string."""
    return json.dumps(masked, ensure_ascii=False).encode()


_ESCAPE = re.compile(rb"\\(?:u[0-9A-Fa-f]{4}|.)")


def _blank_escapes(body: bytes) -> bytes:
    """``body`` with each escape sequence (``\n``, ``\u00e9``) replaced by as many spaces:
    offsets stay the same, and ``\nalice@x.io`` no longer reads as ``nalice@x.io``."""
    if b"\\" not in body:
        return body
    return _ESCAPE.sub(lambda m: b" " * len(m.group(0)), body)


def _by_key(body: bytes, masker: ValueMasker, found: Found, done: list[tuple[int, int]]) -> bytes:
    """Values under PII keys masked whole; ``done`` gets their spans in the result."""
    parts: list[bytes] = []
    pos = 0
    size = 0
    for match in _PAIR.finditer(body):
        entity = classify(match.group("key").decode("utf-8", "replace")).entity
        if entity is None or entity in masker.unmasked:
            continue
        raw = match.group("value")
        strategy = masker.strategies[entity]
        if strategy is Strategy.NULL:
            new = b"null"
        elif raw.startswith(b'"'):
            text = json.loads(raw)
            new = whole(masker.span_text(entity, text if isinstance(text, str) else str(text)))
        else:
            new = b"0"  # a number under a PII key: keep it a number
        start, end = match.span("value")
        parts.append(body[pos:start])
        size += start - pos
        done.append((size, size + len(new)))
        parts.append(new)
        size += len(new)
        pos = end
        found.append(entity)
    if not parts:
        return body
    parts.append(body[pos:])
    return b"".join(parts)


def scan(body: bytes, masker: ValueMasker, found: Found) -> bytes | None:
    """The JSON text ``body`` with PII masked inside; None if there was nothing to mask."""
    before = len(found)
    done: list[tuple[int, int]] = []
    keyed = _by_key(body, masker, found, done) if b'":' in body or b'" :' in body else body
    hits = [
        h
        for h in masker.hits(_blank_escapes(keyed))
        if not any(start < h.end and h.start < end for start, end in done)
    ]
    if not hits and keyed is body:
        return None
    parts: list[bytes] = []
    pos = 0
    for hit in hits:
        parts.append(keyed[pos : hit.start])
        span = keyed[hit.start : hit.end].decode("utf-8", "replace")
        parts.append(masker.span_text(hit.entity, span).encode())
        pos = hit.end
        found.append(hit.entity)
    parts.append(keyed[pos:])
    result = b"".join(parts)
    try:
        json.loads(result)
    except ValueError:
        # Masking in place broke the document (a detection across an escape, say):
        # replace the whole value, never release it unmasked.
        masked = sorted(set(found[before:]))
        del found[before:]
        found.extend(masked)
        return whole("[masked]")
    return result
