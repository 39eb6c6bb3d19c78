"""Client side of PostgreSQL password authentication: md5 and SCRAM-SHA-256.

dbward authenticates to the upstream with its own credentials; these are the
pure computations (RFC 5802 / RFC 7677), with the nonce injectable for tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from dbward.codec.pg.buffer import Writer
from dbward.codec.pg.errors import ProtocolError

SCRAM_SHA_256 = "SCRAM-SHA-256"


def md5_password(user: str, password: str, salt: bytes) -> str:
    """The response to AuthenticationMD5Password: ``md5`` + md5(md5(password + user) + salt)."""
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()  # noqa: S324 - protocol
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()  # noqa: S324 - protocol


def _parse_attributes(message: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ProtocolError(f"malformed SCRAM message attribute {part[:20]!r}")
        attributes[part[0]] = part[2:]
    return attributes


def _text(message: bytes) -> str:
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("SCRAM server message is not UTF-8") from None


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ProtocolError(f"SCRAM server message has an invalid base64 {what}") from None


class ScramClient:
    """One SCRAM-SHA-256 exchange (without channel binding)."""

    def __init__(self, password: str, *, nonce: str | None = None) -> None:
        self._password = password
        self._client_nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self._client_first_bare = f"n=,r={self._client_nonce}"
        self._server_signature: bytes | None = None

    def initial_response(self) -> bytes:
        """Payload of SASLInitialResponse: mechanism name, then the client-first message."""
        first = ("n,," + self._client_first_bare).encode()
        return Writer().cstring(SCRAM_SHA_256).int32(len(first)).raw(first).payload()

    def continue_response(self, server_first: bytes) -> bytes:
        """Payload of SASLResponse answering AuthenticationSASLContinue."""
        text = _text(server_first)
        attrs = _parse_attributes(text)
        try:
            nonce, salt_b64, iterations = attrs["r"], attrs["s"], int(attrs["i"])
        except (KeyError, ValueError):
            raise ProtocolError("SCRAM server-first message lacks nonce, salt or count") from None
        if not 1 <= iterations <= 0x7FFFFFFF:  # PostgreSQL's scram_iterations range
            raise ProtocolError(f"SCRAM iteration count {iterations} is out of range")
        if not nonce.startswith(self._client_nonce):
            raise ProtocolError("SCRAM server nonce does not extend the client nonce")
        salt = _b64(salt_b64, "salt")
        salted = hashlib.pbkdf2_hmac("sha256", self._password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        client_signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_final(self, server_final: bytes) -> None:
        """Check the server's signature; raise if the server did not prove it knows the key."""
        attrs = _parse_attributes(_text(server_final))
        if "e" in attrs:
            raise ProtocolError(f"SCRAM authentication failed: {attrs['e']}")
        if self._server_signature is None or "v" not in attrs:
            raise ProtocolError("SCRAM server-final message arrived out of order")
        if not hmac.compare_digest(_b64(attrs["v"], "signature"), self._server_signature):
            raise ProtocolError("SCRAM server signature does not verify")
