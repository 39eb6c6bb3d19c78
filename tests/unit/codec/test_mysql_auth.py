# ruff: noqa: S303, S324  (SHA-1 is what mysql_native_password is defined with)
"""Authentication plugins' arithmetic (auth.py).

Each expected value is computed here from the plugin's definition with hashlib
(or, for the RSA path, by decrypting with the private key), not taken from the
code under test. The same scramble is checked against a real MariaDB in
tests/integration/test_mysql_codec_live.py.
"""

from __future__ import annotations

import hashlib
from itertools import cycle

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from dbward.codec.mysql import auth

NONCE = b"O&lpo[Y,po\\aQQ#Yyt]Q"  # the 20-byte nonce of the captured MariaDB greeting


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def expected_native(password: bytes, nonce: bytes) -> bytes:
    """SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))."""
    stage1 = hashlib.sha1(password).digest()
    return xor(stage1, hashlib.sha1(nonce + hashlib.sha1(stage1).digest()).digest())


def expected_sha2(password: bytes, nonce: bytes) -> bytes:
    """SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)."""
    p1 = hashlib.sha256(password).digest()
    p2 = hashlib.sha256(p1).digest()
    return xor(p1, hashlib.sha256(p2 + nonce).digest())


# -- mysql_native_password --------------------------------------------------------------------


def test_native_scramble_matches_the_formula() -> None:
    scramble = auth.native_scramble(b"secret", NONCE)
    assert len(scramble) == 20
    assert scramble == expected_native(b"secret", NONCE)


def test_native_scramble_ignores_the_nonce_terminator() -> None:
    # an AuthSwitchRequest's data may carry the nonce's trailing NUL
    assert auth.native_scramble(b"secret", NONCE + b"\x00") == expected_native(b"secret", NONCE)


def test_native_scramble_of_an_empty_password_is_empty() -> None:
    assert auth.native_scramble(b"", NONCE) == b""


def test_native_verify_with_the_servers_stored_hash() -> None:
    # MySQL's PASSWORD('password') is '*' + hex(SHA1(SHA1('password'))), a published value
    stage2 = bytes.fromhex("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19")
    assert hashlib.sha1(hashlib.sha1(b"password").digest()).digest() == stage2
    scramble = auth.native_scramble(b"password", NONCE)
    assert auth.native_verify(scramble, NONCE, stage2)


def test_native_verify_rejects() -> None:
    stage2 = hashlib.sha1(hashlib.sha1(b"right").digest()).digest()
    good = expected_native(b"right", NONCE)
    assert auth.native_verify(good, NONCE, stage2)
    assert not auth.native_verify(expected_native(b"wrong", NONCE), NONCE, stage2)
    assert not auth.native_verify(expected_native(b"right", NONCE[::-1]), NONCE, stage2)
    flipped = bytes([good[0] ^ 1]) + good[1:]
    assert not auth.native_verify(flipped, NONCE, stage2)
    assert not auth.native_verify(good[:19], NONCE, stage2)
    assert not auth.native_verify(good + b"\x00", NONCE, stage2)
    assert not auth.native_verify(b"", NONCE, stage2)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(min_size=20, max_size=20))
def test_native_round_trip(password: bytes, nonce: bytes) -> None:
    scramble = auth.native_scramble(password, nonce)
    assert scramble == expected_native(password, nonce)
    stage2 = hashlib.sha1(hashlib.sha1(password).digest()).digest()
    assert auth.native_verify(scramble, nonce, stage2)


# -- caching_sha2_password (fast path) --------------------------------------------------------


def test_sha2_scramble_matches_the_formula() -> None:
    scramble = auth.sha2_scramble(b"secret", NONCE)
    assert len(scramble) == 32
    assert scramble == expected_sha2(b"secret", NONCE)
    assert auth.sha2_scramble(b"secret", NONCE + b"\x00") == scramble
    assert auth.sha2_scramble(b"", NONCE) == b""


def test_sha2_verify() -> None:
    p2 = hashlib.sha256(hashlib.sha256(b"right").digest()).digest()
    good = expected_sha2(b"right", NONCE)
    assert auth.sha2_verify(good, NONCE, p2)
    assert not auth.sha2_verify(expected_sha2(b"wrong", NONCE), NONCE, p2)
    assert not auth.sha2_verify(bytes([good[0] ^ 0x80]) + good[1:], NONCE, p2)
    assert not auth.sha2_verify(good[:31], NONCE, p2)
    assert not auth.sha2_verify(expected_native(b"right", NONCE), NONCE, p2)  # 20 bytes


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(min_size=20, max_size=20))
def test_sha2_round_trip(password: bytes, nonce: bytes) -> None:
    p2 = hashlib.sha256(hashlib.sha256(password).digest()).digest()
    assert auth.sha2_verify(auth.sha2_scramble(password, nonce), nonce, p2)


# -- caching_sha2_password (full path, RSA) ---------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def decrypt(key: rsa.RSAPrivateKey, ciphertext: bytes, nonce: bytes) -> bytes:
    xored = key.decrypt(
        ciphertext,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )
    return bytes(a ^ b for a, b in zip(xored, cycle(nonce), strict=False))


@pytest.mark.parametrize(
    "password",
    [b"secret", b"", b"a-password-longer-than-the-twenty-byte-nonce", "pässwörd".encode()],
)
def test_rsa_password_decrypts_back(rsa_key: rsa.RSAPrivateKey, password: bytes) -> None:
    ciphertext = auth.rsa_password(password, NONCE, public_pem(rsa_key))
    assert len(ciphertext) == 256
    assert decrypt(rsa_key, ciphertext, NONCE) == password + b"\x00"


def test_rsa_password_uses_only_twenty_bytes_of_nonce(rsa_key: rsa.RSAPrivateKey) -> None:
    password = b"x" * 45
    ciphertext = auth.rsa_password(password, NONCE + b"\x00", public_pem(rsa_key))
    assert decrypt(rsa_key, ciphertext, NONCE) == password + b"\x00"


def test_rsa_password_is_randomised(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = public_pem(rsa_key)
    assert auth.rsa_password(b"pw", NONCE, pem) != auth.rsa_password(b"pw", NONCE, pem)


def test_rsa_password_refuses_a_key_that_is_not_rsa() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="not an RSA key"):
        auth.rsa_password(b"pw", NONCE, pem)


# -- mysql_clear_password ---------------------------------------------------------------------


def test_clear_password() -> None:
    assert auth.clear_password(b"token") == b"token\x00"
    assert auth.clear_password(b"") == b"\x00"


@pytest.mark.parametrize(
    ("data", "password"),
    [
        (b"token\x00", "token"),
        (b"token", "token"),  # some clients leave the NUL out
        (b"\x00", ""),
        (b"", ""),
        ("jé".encode() + b"\x00", "jé"),
        (b"a\x00\x00", "a\x00"),  # only one terminator is removed
        (b"\xff\x00", "\ufffd"),  # not UTF-8: replaced, never an exception
    ],
)
def test_parse_clear(data: bytes, password: str) -> None:
    assert auth.parse_clear(data) == password


@given(st.text())
def test_clear_round_trip(password: str) -> None:
    assert auth.parse_clear(auth.clear_password(password.encode())) == password


def test_plugin_names_and_codes() -> None:
    assert auth.NATIVE == "mysql_native_password"
    assert auth.CACHING_SHA2 == "caching_sha2_password"
    assert auth.CLEAR == "mysql_clear_password"
    assert (auth.FAST_AUTH_OK, auth.FULL_AUTH_NEEDED, auth.REQUEST_PUBLIC_KEY) == (3, 4, b"\x02")
