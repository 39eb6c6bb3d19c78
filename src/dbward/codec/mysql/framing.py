"""Splitting a byte stream into packets without copying what passes through.

Every MySQL packet is a 3-byte little-endian payload length, a sequence
number and the payload. :class:`Framer` returns the complete packets of what
the socket gave as one ``bytes`` block (to forward untouched) and each
packet's ``(sequence, payload_start, payload_end)``; an incomplete tail is
kept for the next call. A payload of 2^24-1 bytes continues in the next
packet: :func:`logical` joins such a run back into one payload.
"""

from __future__ import annotations

from dbward.codec.mysql.constants import MAX_PACKET
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.wire import p24

Frame = tuple[int, int, int]
"""(sequence number, payload start, payload end) offsets into the block that holds it."""

DEFAULT_MAX_PAYLOAD = 256 * 1024 * 1024


class Framer:
    __slots__ = ("_max", "_need", "_pending", "_what")

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD, what: str = "packet") -> None:
        self._pending = bytearray()
        self._need = 0
        self._max = max_payload
        self._what = what

    @property
    def pending(self) -> int:
        return len(self._pending)

    def split(self, data: bytes) -> tuple[bytes, list[Frame]]:
        """Feed ``data``; return the complete packets as one block and their frames.

        A logical packet longer than ``max_payload`` (counting its continuations)
        raises :class:`MysqlProtocolError`.
        """
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return b"", []
            buf = bytes(self._pending)
            self._pending.clear()
        else:
            buf = data
        frames: list[Frame] = []
        pos = 0
        size = len(buf)
        run = 0  # bytes of a logical packet continued so far
        cut = 0  # where the last complete logical packet ends
        kept = 0  # frames that belong to complete logical packets
        while size - pos >= 4:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + 4 + length
            if end > size:
                self._need = end - cut
                break
            run += length
            if run > self._max:
                raise MysqlProtocolError(
                    f"{self._what} of {run} bytes is over the {self._max}-byte limit"
                )
            frames.append((buf[pos + 3], pos + 4, end))
            pos = end
            if length < MAX_PACKET:
                run = 0
                cut = pos
                kept = len(frames)
        else:
            self._need = 0
        if cut < size:
            self._pending += buf[cut:]
            if self._need == 0 or self._need < size - cut:
                self._need = size - cut + 1
            del frames[kept:]
        if cut == size:
            return buf, frames
        return buf[:cut], frames


def logical(block: bytes, frames: list[Frame], index: int) -> tuple[bytes, int]:
    """The payload of the logical packet that starts at ``frames[index]`` (joined across
    continuation packets), and the index of the frame after it."""
    _, start, end = frames[index]
    if end - start < MAX_PACKET:
        return block[start:end], index + 1
    parts = [block[start:end]]
    index += 1
    while index < len(frames):
        _, start, end = frames[index]
        parts.append(block[start:end])
        index += 1
        if end - start < MAX_PACKET:
            break
    return b"".join(parts), index


def packet(seq: int, payload: bytes) -> bytes:
    """``payload`` as one or more packets starting at sequence number ``seq``."""
    if len(payload) < MAX_PACKET:
        return p24(len(payload)) + bytes((seq & 0xFF,)) + payload
    out = []
    pos = 0
    while True:
        chunk = payload[pos : pos + MAX_PACKET]
        out.append(p24(len(chunk)) + bytes((seq & 0xFF,)) + chunk)
        seq += 1
        pos += MAX_PACKET
        if len(chunk) < MAX_PACKET:
            break
    return b"".join(out)


def packets_needed(payload_length: int) -> int:
    """How many sequence numbers a payload this long uses."""
    return payload_length // MAX_PACKET + 1
