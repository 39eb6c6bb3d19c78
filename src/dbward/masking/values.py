"""Masking one column value so that it stays a valid value of its type, in either format.

:meth:`ValueMasker.whole` masks a value known to be PII (its column was
classified); :meth:`ValueMasker.scan` looks for PII inside text, JSON and
arrays of them and masks only what it finds. Both return the new field bytes
(None for SQL NULL); ``scan`` returns None when nothing was found.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation

from dbward.masking import arrays, jsontext
from dbward.masking.entities import Entity, Strategy
from dbward.masking.scanner import Hit, Scanner
from dbward.masking.strategies import Pseudonymizer, label, mask_text
from dbward.masking.types import INT_BYTES, ColumnType, Kind

_EPOCH = datetime.date(2000, 1, 1)
_REDACTED_DATE = datetime.date(1900, 1, 1)
_TZ_SUFFIX = re.compile(rb"[+-]\d\d(?::?\d\d){0,2}$")
_INT_LIMIT = {20: 2**63 - 1, 21: 2**15 - 1, 23: 2**31 - 1}

Found = list[Entity]


def fit(text: str, ctype: ColumnType) -> str:
    """``text`` within the type's length: too long becomes '*'s; char(n) is padded."""
    limit = ctype.max_chars
    if limit is None:
        return text
    if len(text) > limit:
        text = "*" * limit
    return text.ljust(limit) if ctype.fixed_chars else text


def _numeric_binary(value: Decimal) -> bytes:
    """PostgreSQL's binary numeric: base-10000 digits with weight, sign and scale."""
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(-exponent, 0)
    text = "".join(map(str, digit_tuple))
    integer = text[: len(text) + exponent] if exponent < 0 else text + "0" * exponent
    fraction = text[len(text) + exponent :] if exponent < 0 else ""
    integer = integer.lstrip("0")
    integer = integer.rjust(-(-len(integer) // 4) * 4, "0")
    fraction = fraction.ljust(-(-len(fraction) // 4) * 4, "0")
    groups = [int(integer[i : i + 4]) for i in range(0, len(integer), 4)]
    weight = len(groups) - 1
    groups += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    while groups and groups[-1] == 0:
        groups.pop()
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    if not groups:
        weight = 0
    header = struct.pack("!hhHH", len(groups), weight, 0x4000 if sign else 0, dscale)
    return header + struct.pack(f"!{len(groups)}H", *groups)


def _inet_binary(text: str, cidr: bool) -> bytes:
    network = ipaddress.ip_interface(text)
    packed = network.ip.packed
    family = 2 if network.version == 4 else 3
    return bytes([family, network.network.prefixlen, 1 if cidr else 0, len(packed)]) + packed


class ValueMasker:
    """Masks values for one session: its strategies and what it may see unmasked."""

    def __init__(
        self,
        scanner: Scanner,
        pseudonyms: Pseudonymizer,
        strategies: Mapping[Entity, Strategy],
        unmasked: frozenset[Entity] = frozenset(),
    ) -> None:
        self.scanner = scanner
        self.pseudonyms = pseudonyms
        self.strategies = strategies
        self.unmasked = unmasked
        self._memos: dict[object, dict[bytes, bytes | None]] = {}

    def memo(self, key: object) -> dict[bytes, bytes | None]:
        """A memo of whole-value masks for one kind of column (entity, strategy, type)."""
        found = self._memos.get(key)
        if found is None:
            found = self._memos[key] = {}
        return found

    # whole values --------------------------------------------------------------------

    def whole_fn(
        self, entity: Entity, strategy: Strategy, ctype: ColumnType, binary: bool
    ) -> Callable[[bytes], bytes | None]:
        """A function masking whole values of one kind of column: the common text cases
        without the general path's dispatch (same results), the rest through it."""
        if ctype.kind is Kind.TEXT and not ctype.array and ctype.max_chars is None:
            fast = self._fast_text(entity, strategy)
            if fast is not None:
                return fast
        return lambda value: self.whole(value, entity, strategy, ctype, binary)

    def _fast_text(
        self, entity: Entity, strategy: Strategy
    ) -> Callable[[bytes], bytes | None] | None:
        if strategy is Strategy.REDACT:
            redacted = label(entity).encode()
            return lambda value: redacted
        if strategy is Strategy.NULL:
            return lambda value: None
        if strategy is Strategy.PARTIAL and entity is Entity.EMAIL:
            fallback = label(entity).encode()
            return lambda value: b"****@" + value.rpartition(b"@")[2] if b"@" in value else fallback
        if strategy is Strategy.PARTIAL and entity in KEEP_LAST:
            keep = KEEP_LAST[entity]
            return lambda value: _keep_last_bytes(value, keep)
        if strategy is Strategy.PSEUDONYM and entity is Entity.PERSON_NAME:
            digest = self.pseudonyms.digest
            return lambda value: (
                b"Person "
                + digest(entity, value.decode("utf-8", "replace"))[:4].hex().upper().encode()
            )
        return None

    def whole(
        self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType, binary: bool
    ) -> bytes | None:
        """``value`` (a field of a column that holds ``entity``) masked; None for NULL."""
        if strategy is Strategy.NULL:
            return None
        if ctype.array:
            element = ctype.element()
            masked = self._array(
                value, ctype, binary, lambda v: self._scalar(v, entity, strategy, element, binary)
            )
            return value if masked is None else masked  # None: no element to mask
        return self._scalar(value, entity, strategy, ctype, binary)

    def _scalar(
        self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType, binary: bool
    ) -> bytes | None:
        kind = ctype.kind
        if kind is Kind.TEXT:
            return fit(
                self._text(entity, strategy, value.decode("utf-8", "replace")), ctype
            ).encode()
        if kind in (Kind.JSON, Kind.JSONB):
            masked = jsontext.whole(
                self._text(
                    entity, strategy, jsontext.unquoted(self._json_text(value, kind, binary))
                )
            )
            return b"\x01" + masked if kind is Kind.JSONB and binary else masked
        handler = _TYPED.get(kind)
        if handler is None:
            return None
        try:
            return handler(self, value, entity, strategy, ctype, binary)
        except (ValueError, InvalidOperation, struct.error, OverflowError):
            return None  # a value dbward cannot rewrite in its type: NULL is always valid

    def _text(self, entity: Entity, strategy: Strategy, text: str) -> str:
        return mask_text(entity, strategy, text, self.pseudonyms)

    @staticmethod
    def _json_text(value: bytes, kind: Kind, binary: bool) -> str:
        raw = value[1:] if kind is Kind.JSONB and binary else value
        return raw.decode("utf-8", "replace")

    def _int(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
             binary: bool) -> bytes:  # fmt: skip
        number = int.from_bytes(value, "big", signed=True) if binary else int(value)
        masked = self._number(str(abs(number)), entity, strategy)
        result = int(masked) % (_INT_LIMIT[ctype.oid] + 1)
        return (
            result.to_bytes(INT_BYTES[ctype.oid], "big", signed=True)
            if binary
            else (str(result).encode())
        )

    def _number(self, digits: str, entity: Entity, strategy: Strategy) -> str:
        if strategy is Strategy.PSEUDONYM:
            return self.pseudonyms.token(entity, digits) if digits.isdigit() else "0"
        if strategy is Strategy.PARTIAL:
            return digits[-4:] if len(digits) > 4 else "0"
        return "0"

    def _numeric(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
                 binary: bool) -> bytes:  # fmt: skip
        if binary:
            # Only the integer part of a classified numeric matters (cards, accounts).
            ndigits, weight = struct.unpack_from("!hh", value)
            groups = struct.unpack_from(f"!{ndigits}H", value, 8)
            integer = "".join(f"{g:04d}" for g in groups[: max(weight + 1, 0)]).lstrip("0")
            integer += "0000" * max(weight + 1 - ndigits, 0)
        else:
            integer = value.split(b".")[0].lstrip(b"-").decode() or "0"
        masked = Decimal(self._number(integer or "0", entity, strategy) or "0")
        return _numeric_binary(masked) if binary else str(masked).encode()

    def _date_for(
        self, entity: Entity, strategy: Strategy, original: datetime.date
    ) -> datetime.date:
        if strategy is Strategy.PARTIAL:
            return datetime.date(original.year, 1, 1)
        if strategy is Strategy.PSEUDONYM:
            digest = self.pseudonyms.digest(entity, original.isoformat())
            return _REDACTED_DATE + datetime.timedelta(days=int.from_bytes(digest[:4]) % 40000)
        return _REDACTED_DATE

    def _date(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
              binary: bool) -> bytes:  # fmt: skip
        if binary:
            original = _EPOCH + datetime.timedelta(days=struct.unpack("!i", value)[0])
        else:
            original = datetime.date.fromisoformat(value[:10].decode())
        masked = self._date_for(entity, strategy, original)
        if binary:
            return struct.pack("!i", (masked - _EPOCH).days)
        return masked.isoformat().encode()

    def _timestamp(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
                   binary: bool) -> bytes:  # fmt: skip
        if binary:
            micros = struct.unpack("!q", value)[0]
            original = _EPOCH + datetime.timedelta(microseconds=micros)
            masked = self._date_for(entity, strategy, original)
            return struct.pack("!q", (masked - _EPOCH).days * 86_400_000_000)
        masked = self._date_for(entity, strategy, datetime.date.fromisoformat(value[:10].decode()))
        suffix = _TZ_SUFFIX.search(value[10:])
        return masked.isoformat().encode() + b" 00:00:00" + (suffix.group(0) if suffix else b"")

    def _uuid(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
              binary: bool) -> bytes:  # fmt: skip
        if strategy is Strategy.PSEUDONYM:
            original = str(uuid.UUID(bytes=value)) if binary else value.decode()
            masked = uuid.UUID(bytes=self.pseudonyms.digest(entity, original)[:16], version=4)
        else:
            masked = uuid.UUID(int=0)
        return masked.bytes if binary else str(masked).encode()

    def _inet(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
              binary: bool) -> bytes:  # fmt: skip
        if binary:
            family, bits, _cidr, size = value[:4]
            address = ipaddress.ip_address(value[4 : 4 + size])
            full = 32 if family == 2 else 128
            text = str(address) if bits == full else f"{address}/{bits}"
        else:
            text = value.decode()
        masked = mask_text(
            Entity.IP,
            strategy if strategy is not Strategy.REDACT else Strategy.PARTIAL,
            text,
            self.pseudonyms,
        )
        if strategy is Strategy.REDACT:
            masked = "0.0.0.0" if ":" not in text else "::"  # noqa: S104 (a masked value)
        is_cidr = ctype.oid == 650
        if is_cidr:
            masked = str(ipaddress.ip_network(masked, strict=False))
        return _inet_binary(masked, is_cidr) if binary else masked.encode()

    def _bytea(self, value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType,
               binary: bool) -> bytes:  # fmt: skip
        if strategy is Strategy.PSEUDONYM:
            digest = self.pseudonyms.digest(entity, value.hex())[:16]
            return digest if binary else b"\\x" + digest.hex().encode()
        return b"" if binary else b"\\x"

    # scanning ------------------------------------------------------------------------

    def scan(self, value: bytes, ctype: ColumnType, binary: bool, found: Found) -> bytes | None:
        """``value`` with the PII inside it masked, or None if there was none to mask.

        Entities masked are appended to ``found``.
        """
        if ctype.array:
            try:
                return self._array(
                    value, ctype, binary, lambda v: self._scan_scalar(v, ctype, binary, found) or v
                )
            except arrays.ArrayFormatError:
                return None
        return self._scan_scalar(value, ctype, binary, found)

    def _scan_scalar(self, value: bytes, ctype: ColumnType, binary: bool,
                     found: Found) -> bytes | None:  # fmt: skip
        kind = ctype.kind
        if kind is Kind.TEXT:
            hits = self.hits(value)
            if not hits:
                return None
            return self._replace(value, hits, ctype, found)
        if kind in (Kind.JSON, Kind.JSONB):
            prefix = b"\x01" if kind is Kind.JSONB and binary else b""
            body = value[len(prefix) :]
            masked = jsontext.scan(body, self, found)
            return None if masked is None else prefix + masked
        return None

    def hits(self, value: bytes) -> list[Hit]:
        unmasked = self.unmasked
        hits = self.scanner.find(value)
        return [h for h in hits if h.entity not in unmasked] if unmasked else hits

    def span_text(self, entity: Entity, text: str) -> str:
        """A detected span inside text, masked (NULL cannot mask part of a value: redact)."""
        strategy = self.strategies[entity]
        if strategy is Strategy.NULL:
            return label(entity)
        return mask_text(entity, strategy, text, self.pseudonyms)

    def _replace(self, value: bytes, hits: list[Hit], ctype: ColumnType, found: Found) -> bytes:
        parts: list[bytes] = []
        pos = 0
        for hit in hits:
            span = value[hit.start : hit.end]
            masked = self.span_text(hit.entity, span.decode("utf-8", "replace")).encode()
            parts.append(value[pos : hit.start])
            parts.append(masked)
            pos = hit.end
            found.append(hit.entity)
        parts.append(value[pos:])
        result = b"".join(parts)
        limit = ctype.max_chars
        if limit is not None and len(result.decode("utf-8", "replace")) > limit:
            # Too long for varchar(n): mask each span with as many '*' as it had bytes.
            result = _star_spans(value, hits)
        return result

    def _array(self, value: bytes, ctype: ColumnType, binary: bool,
               mask: Callable[[bytes], bytes | None]) -> bytes | None:  # fmt: skip
        return arrays.map_binary(value, mask) if binary else arrays.map_text(value, mask)


KEEP_LAST = {Entity.CARD: 4, Entity.SSN: 4, Entity.PHONE: 2}
_ALNUM_BYTES = re.compile(rb"[A-Za-z0-9]")


def _keep_last_bytes(value: bytes, keep: int) -> bytes:
    """As strategies' partial for cards, SSNs and phones, on bytes."""
    cut = len(value)
    kept = 0
    while cut > 0 and kept < keep:
        cut -= 1
        if value[cut : cut + 1].isalnum():
            kept += 1
    return _ALNUM_BYTES.sub(b"*", value[:cut]) + value[cut:]


def _star_spans(value: bytes, hits: list[Hit]) -> bytes:
    out = bytearray(value)
    for hit in hits:
        out[hit.start : hit.end] = b"*" * (hit.end - hit.start)
    return bytes(out)


_TYPED: dict[Kind, Callable[..., bytes]] = {
    Kind.INT: ValueMasker._int,
    Kind.NUMERIC: ValueMasker._numeric,
    Kind.DATE: ValueMasker._date,
    Kind.TIMESTAMP: ValueMasker._timestamp,
    Kind.UUID: ValueMasker._uuid,
    Kind.INET: ValueMasker._inet,
    Kind.BYTEA: ValueMasker._bytea,
}
