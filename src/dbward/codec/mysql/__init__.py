"""The MySQL/MariaDB client/server protocol, sans-IO: bytes in, typed messages out, and back.

:mod:`.framing` splits a stream into packets; :mod:`.wire` reads and writes
the protocol's integers and strings; :mod:`.handshake` and :mod:`.auth` cover
connecting and authenticating (both sides); :mod:`.packets` the generic OK,
ERR and EOF packets and the commands; :mod:`.results` column definitions and
rows (text and binary); :mod:`.responses` follows a command's answer packet by
packet. No asyncio, no sockets.
"""
