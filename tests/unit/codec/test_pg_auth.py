"""md5 and SCRAM-SHA-256 client computations against independent references."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from dbward.codec.pg.auth import SCRAM_SHA_256, ScramClient, md5_password
from dbward.codec.pg.errors import ProtocolError

# --------------------------------------------------------------------------
# md5: concat('md5', md5(concat(md5(concat(password, username)), random-salt)))
# --------------------------------------------------------------------------

# Worked out once, outside this code base, from the formula above:
#   md5("s3cretalice")                                  = 8213e4d0d5792b064442db7988e9f4c4
#   md5("8213e4d0d5792b064442db7988e9f4c4" + 93 3f 1a 07) = 8ef180592219ca1befb43f0d4e7a5664
MD5_SALT = b"\x93\x3f\x1a\x07"
MD5_EXPECTED = "md58ef180592219ca1befb43f0d4e7a5664"


def test_md5_password_against_hand_computed_value() -> None:
    assert md5_password("alice", "s3cret", MD5_SALT) == MD5_EXPECTED


def test_md5_password_follows_the_documented_formula() -> None:
    user, password, salt = "bob", "pa55 wörd", b"\x00\xff\x10\x7f"
    inner = hashlib.md5((password + user).encode()).hexdigest()  # noqa: S324
    expected = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()  # noqa: S324
    assert md5_password(user, password, salt) == expected


def test_md5_password_depends_on_user_and_salt() -> None:
    base = md5_password("alice", "s3cret", MD5_SALT)
    assert md5_password("alicf", "s3cret", MD5_SALT) != base
    assert md5_password("alice", "s3cret", b"\x93\x3f\x1a\x08") != base
    assert len(base) == 35


# --------------------------------------------------------------------------
# SCRAM-SHA-256 (RFC 5802 section 3, RFC 7677 section 3 test vector)
# --------------------------------------------------------------------------

PASSWORD = "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = CLIENT_NONCE + "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SERVER_FIRST = f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = f"c=biws,r={SERVER_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
RFC_SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def reference_scram(
    user: str, password: str, client_nonce: str, server_first: str
) -> tuple[str, str]:
    """Client-final and server-final messages, straight from the RFC 5802 formulas.

    SaltedPassword  := Hi(Normalize(password), salt, i)
    ClientKey       := HMAC(SaltedPassword, "Client Key")
    StoredKey       := H(ClientKey)
    AuthMessage     := client-first-message-bare + "," +
                       server-first-message + "," +
                       client-final-message-without-proof
    ClientSignature := HMAC(StoredKey, AuthMessage)
    ClientProof     := ClientKey XOR ClientSignature
    ServerKey       := HMAC(SaltedPassword, "Server Key")
    ServerSignature := HMAC(ServerKey, AuthMessage)
    """
    attributes = dict(part.split("=", 1) for part in server_first.split(","))
    salt = base64.b64decode(attributes["s"])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(attributes["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    client_first_bare = f"n={user},r={client_nonce}"
    without_proof = f"c=biws,r={attributes['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    return (
        f"{without_proof},p={base64.b64encode(proof).decode()}",
        f"v={base64.b64encode(server_signature).decode()}",
    )


def test_reference_reproduces_the_rfc_7677_vector() -> None:
    # The helper below is only trusted because it gives RFC 7677's exact answer.
    assert reference_scram("user", PASSWORD, CLIENT_NONCE, SERVER_FIRST) == (
        RFC_CLIENT_FINAL,
        RFC_SERVER_FINAL,
    )


def test_initial_response_sends_an_empty_user_like_libpq() -> None:
    # PostgreSQL takes the user from the startup packet; the client-first says "n=".
    response = ScramClient(PASSWORD, nonce=CLIENT_NONCE).initial_response()
    assert response == (
        b"SCRAM-SHA-256\x00"
        b"\x00\x00\x00\x1c"  # 28 bytes follow
        b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
    )
    assert SCRAM_SHA_256 == "SCRAM-SHA-256"


def test_continue_response_matches_the_rfc_formulas_for_an_empty_user() -> None:
    # Because the client sends "n=" rather than RFC 7677's "n=user", the AuthMessage and
    # so the proof differ from the RFC's p=...; the expectation is computed from the
    # RFC formulas with user "" instead.
    expected_final, expected_server_final = reference_scram(
        "", PASSWORD, CLIENT_NONCE, SERVER_FIRST
    )
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.initial_response()
    final = client.continue_response(SERVER_FIRST.encode())
    assert final == expected_final.encode()
    assert final != RFC_CLIENT_FINAL.encode()
    assert final.startswith(f"c=biws,r={SERVER_NONCE},p=".encode())
    client.verify_final(expected_server_final.encode())


def test_server_signature_for_another_auth_message_is_refused() -> None:
    # RFC 7677's v= was computed over "n=user": it does not match what this client sent.
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    with pytest.raises(ProtocolError, match="SCRAM server signature does not verify"):
        client.verify_final(RFC_SERVER_FINAL.encode())


def test_wrong_server_signature_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    wrong = base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(ProtocolError, match="SCRAM server signature does not verify"):
        client.verify_final(f"v={wrong}".encode())


def test_wrong_password_gives_a_signature_that_does_not_verify() -> None:
    _, server_final = reference_scram("", "not-pencil", CLIENT_NONCE, SERVER_FIRST)
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    with pytest.raises(ProtocolError, match="does not verify"):
        client.verify_final(server_final.encode())


def test_server_error_attribute_is_raised() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    with pytest.raises(ProtocolError, match="SCRAM authentication failed: invalid-proof"):
        client.verify_final(b"e=invalid-proof")


def test_nonce_that_does_not_extend_the_client_nonce_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    server_first = SERVER_FIRST.replace(f"r={CLIENT_NONCE}", "r=XOprNGfwEbeRWgbNEkqO")
    with pytest.raises(ProtocolError, match="SCRAM server nonce does not extend the client nonce"):
        client.continue_response(server_first.encode())


def test_nonce_shorter_than_the_client_nonce_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    with pytest.raises(ProtocolError, match="does not extend the client nonce"):
        client.continue_response(b"r=rOprNG,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


@pytest.mark.parametrize(
    "server_first",
    [
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=many",
    ],
    ids=["no-nonce", "no-salt", "no-count", "count-not-a-number"],
)
def test_incomplete_server_first_is_refused(server_first: bytes) -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    with pytest.raises(ProtocolError, match="lacks nonce, salt or count"):
        client.continue_response(server_first)


@pytest.mark.parametrize("count", ["0", "-1", "2147483648", "99999999999999999999"])
def test_iteration_count_out_of_range_is_refused(count: str) -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    server_first = f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i={count}"
    with pytest.raises(ProtocolError, match=f"SCRAM iteration count {count} is out of range"):
        client.continue_response(server_first.encode())


@pytest.mark.parametrize("message", [b"", b"r", b"rabc", b"r=x,,s=y", b"=x"])
def test_malformed_server_first_is_refused(message: bytes) -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    with pytest.raises(ProtocolError, match="malformed SCRAM message attribute"):
        client.continue_response(message)


def test_server_first_not_utf8_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    with pytest.raises(ProtocolError, match="SCRAM server message is not UTF-8"):
        client.continue_response(b"r=" + CLIENT_NONCE.encode() + b"\xff,s=AAAA,i=1")


@pytest.mark.parametrize("salt", ["abc", "!!!!", "W22ZaJ0SNY7soEsUEjb6gQ="])
def test_server_first_with_invalid_base64_salt_is_refused(salt: str) -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    with pytest.raises(ProtocolError, match="invalid base64 salt"):
        client.continue_response(f"r={SERVER_NONCE},s={salt},i=4096".encode())


@pytest.mark.parametrize("signature", [b"v=abc", b"v=!!!!"])
def test_server_final_with_invalid_base64_is_refused(signature: bytes) -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    with pytest.raises(ProtocolError, match="invalid base64 signature"):
        client.verify_final(signature)


def test_server_final_not_utf8_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    with pytest.raises(ProtocolError, match="not UTF-8"):
        client.verify_final(b"v=\xff")


def test_server_final_before_server_first_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    with pytest.raises(ProtocolError, match="arrived out of order"):
        client.verify_final(RFC_SERVER_FINAL.encode())


def test_server_final_without_signature_is_refused() -> None:
    client = ScramClient(PASSWORD, nonce=CLIENT_NONCE)
    client.continue_response(SERVER_FIRST.encode())
    with pytest.raises(ProtocolError, match="arrived out of order"):
        client.verify_final(b"x=1")


def test_random_nonces_differ() -> None:
    first = ScramClient(PASSWORD).initial_response()
    second = ScramClient(PASSWORD).initial_response()
    assert first != second
    assert first.startswith(b"SCRAM-SHA-256\x00")
    assert b"n,,n=,r=" in first
