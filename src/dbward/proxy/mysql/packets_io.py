"""Reading whole packets during the connection phase, and numbering the ones dbward sends."""

from __future__ import annotations

from dbward.codec.mysql.framing import Framer, logical, packet
from dbward.proxy.connection import Conn


class PacketReader:
    """Awaited, one packet at a time (the connection phase; the relay uses callbacks)."""

    def __init__(self, conn: Conn, *, max_payload: int, what: str) -> None:
        self.conn = conn
        self._framer = Framer(max_payload=max_payload, what=what)
        self._ready: list[tuple[int, bytes]] = []
        self.seq = 0  # the sequence number of the last packet read

    async def next(self) -> bytes:
        while not self._ready:
            block, frames = self._framer.split(await self.conn.read())
            index = 0
            while index < len(frames):
                seq = frames[index][0]
                payload, index = logical(block, frames, index)
                self._ready.append((seq, payload))
        self.seq, payload = self._ready.pop(0)
        return payload

    def send(self, payload: bytes) -> None:
        """Answer the last packet read (the next sequence number)."""
        self.seq = (self.seq + 1) & 0xFF
        self.conn.write(packet(self.seq, payload))

    def send_first(self, payload: bytes) -> None:
        """The first packet of an exchange (sequence number 0)."""
        self.seq = 0
        self.conn.write(packet(0, payload))

    @property
    def buffered(self) -> bool:
        return bool(self._ready) or self._framer.pending > 0
