# ruff: noqa: S303, S324  (SHA-1 is what these plugins are defined with; dbward cannot choose)
"""Authentication plugins' arithmetic: scrambles and the RSA-wrapped password.

``mysql_native_password``: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
``caching_sha2_password``: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)
for the fast path; the full path sends the password itself, in clear over TLS
or RSA-OAEP-encrypted (XORed with the nonce) under the server's public key.
``mysql_clear_password``: the password and a NUL, over TLS only.
"""

from __future__ import annotations

import hashlib
import hmac
from itertools import cycle

NATIVE = "mysql_native_password"
CACHING_SHA2 = "caching_sha2_password"
CLEAR = "mysql_clear_password"

# caching_sha2_password's AuthMoreData codes
FAST_AUTH_OK = 3
FULL_AUTH_NEEDED = 4
REQUEST_PUBLIC_KEY = b"\x02"


def native_scramble(password: bytes, nonce: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(nonce[:20] + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def native_verify(scramble: bytes, nonce: bytes, stage2: bytes) -> bool:
    """Server side: does ``scramble`` prove knowledge of the password whose
    SHA1(SHA1()) is ``stage2``?"""
    if len(scramble) != 20:
        return False
    mask = hashlib.sha1(nonce[:20] + stage2).digest()
    stage1 = bytes(a ^ b for a, b in zip(scramble, mask, strict=True))
    return hmac.compare_digest(hashlib.sha1(stage1).digest(), stage2)


def sha2_scramble(password: bytes, nonce: bytes) -> bytes:
    if not password:
        return b""
    p1 = hashlib.sha256(password).digest()
    p2 = hashlib.sha256(p1).digest()
    p3 = hashlib.sha256(p2 + nonce[:20]).digest()
    return bytes(a ^ b for a, b in zip(p1, p3, strict=True))


def sha2_verify(scramble: bytes, nonce: bytes, p2: bytes) -> bool:
    """Server side (fast path): ``p2`` is SHA256(SHA256(password)) from the cache."""
    if len(scramble) != 32:
        return False
    p3 = hashlib.sha256(p2 + nonce[:20]).digest()
    p1 = bytes(a ^ b for a, b in zip(scramble, p3, strict=True))
    return hmac.compare_digest(hashlib.sha256(p1).digest(), p2)


def clear_password(password: bytes) -> bytes:
    return password + b"\x00"


def rsa_password(password: bytes, nonce: bytes, public_key_pem: bytes) -> bytes:
    """The full path without TLS: (password + NUL) XOR nonce, RSA-OAEP under the key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the server's public key is not an RSA key")
    plain = password + b"\x00"
    xored = bytes(a ^ b for a, b in zip(plain, cycle(nonce[:20]), strict=False))
    return key.encrypt(
        xored,
        padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
        ),
    )


def parse_clear(data: bytes) -> str:
    """The password a client sent in clear (NUL-terminated, or not)."""
    if data.endswith(b"\x00"):
        data = data[:-1]
    return data.decode("utf-8", "replace")
