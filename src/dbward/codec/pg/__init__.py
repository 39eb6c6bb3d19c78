"""Sans-IO codec for the PostgreSQL frontend/backend protocol, version 3.

Bytes in, typed messages out, and back. No sockets and no asyncio here.
"""
