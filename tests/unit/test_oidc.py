"""OIDC verification against a real local HTTP identity provider (discovery + JWKS)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from dbward.config import OidcProvider
from dbward.errors import AuthenticationError, AuthorizationError, DbwardError
from dbward.identity.models import Identity, IdentityKind
from dbward.identity.oidc import OidcVerifier, fetch_url, looks_like_jwt

AUDIENCE = "dbward"


# -- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]


def _make_key(kind: str, kid: str, *, rsa_bits: int = 2048) -> SigningKey:
    private: Any
    if kind == "RSA":
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "RS256"
    elif kind == "EC":
        private = ec.generate_private_key(ec.SECP256R1())
        public_jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "ES256"
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        public_jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "EdDSA"
    return SigningKey(kid, alg, private, {**public_jwk, "kid": kid, "use": "sig"})


_KEYS: dict[str, SigningKey] = {}


def key(name: str) -> SigningKey:
    """Keys are slow to make: one per name for the whole module."""
    if name not in _KEYS:
        kind = "EC" if name.startswith("ec") else "OKP" if name.startswith("ed") else "RSA"
        _KEYS[name] = _make_key(kind, name)
    return _KEYS[name]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- a real identity provider on 127.0.0.1 -------------------------------------------------


class FakeIdp:
    """Serves a discovery document and a JWKS that tests can change; counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: Counter[str] = Counter()
        self.delay = 0.0
        self._lock = threading.Lock()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with idp._lock:
                    idp.hits[self.path] += 1
                    status, body = idp.routes.get(self.path, (404, b"{}"))
                time.sleep(idp.delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.set_json(
            "/.well-known/openid-configuration",
            {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"},
        )
        self.publish(key("rsa1"), key("ec1"), key("ed1"))

    def set_json(self, path: str, document: object, status: int = 200) -> None:
        with self._lock:
            self.routes[path] = (status, json.dumps(document).encode())

    def publish(self, *keys: SigningKey) -> None:
        self.set_json("/jwks", {"keys": [k.jwk for k in keys]})

    @property
    def jwks_hits(self) -> int:
        return self.hits["/jwks"]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "00u1abc",
            "email": "Ada@Example.com",
            "groups": ["dba", "eng"],
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(
        self,
        signer: SigningKey | None = None,
        *,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        signer = signer or key("rsa1")
        return jwt.encode(
            self.claims(**claims),
            signer.private,
            algorithm=signer.alg,
            headers={"kid": signer.kid, **(headers or {})},
        )

    def provider(self, **settings: Any) -> OidcProvider:
        return OidcProvider(**{"issuer": self.issuer, "audience": AUDIENCE, **settings})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[FakeIdp]:
    server = FakeIdp()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verify(verifier: OidcVerifier, token: str, user: str = "ada@example.com") -> Identity:
    return asyncio.run(verifier.verify(token, user))


def failure(
    verifier: OidcVerifier,
    token: str,
    user: str = "ada@example.com",
    *,
    error: type = AuthenticationError,
) -> str:
    """Verify, expect ``error``, check the token is nowhere in the message, return it."""
    with pytest.raises(error) as caught:
        verify(verifier, token, user)
    message = str(caught.value)
    assert not token or token not in message
    for segment in token.split("."):
        if len(segment) > 12:
            assert segment not in message
    return message


# -- valid tokens --------------------------------------------------------------------------


def test_valid_token_gives_identity(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    token = idp.sign(exp=int(time.time()) + 120)
    identity = verify(verifier, token)
    assert identity == Identity(
        name="Ada@Example.com",
        kind=IdentityKind.HUMAN,
        groups=("dba", "eng"),
        provider=f"oidc:{idp.issuer}",
        subject="00u1abc",
        expires_at=float(jwt.decode(token, options={"verify_signature": False})["exp"]),
    )


@pytest.mark.parametrize("name", ["rsa1", "ec1", "ed1"])
def test_rsa_ec_and_ed25519_keys(idp: FakeIdp, name: str) -> None:
    verifier = OidcVerifier(idp.provider())
    assert verify(verifier, idp.sign(key(name))).name == "Ada@Example.com"


def test_token_without_kid_is_tried_against_fitting_keys(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    token = jwt.encode(idp.claims(), key("ec1").private, algorithm="ES256")
    assert "kid" not in jwt.get_unverified_header(token)
    assert verify(verifier, token).subject == "00u1abc"


def test_discovery_and_keys_are_cached(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    for _ in range(3):
        verify(verifier, idp.sign())
    assert idp.hits["/.well-known/openid-configuration"] == 1
    assert idp.jwks_hits == 1


def test_configured_jwks_uri_skips_discovery(idp: FakeIdp) -> None:
    idp.publish(key("rsa1"))
    idp.set_json("/other-keys", {"keys": [key("rsa1").jwk]})
    verifier = OidcVerifier(idp.provider(jwks_uri=f"{idp.issuer}/other-keys"))
    verify(verifier, idp.sign())
    assert idp.hits["/.well-known/openid-configuration"] == 0
    assert idp.hits["/other-keys"] == 1


def test_keys_are_refetched_after_cache_time(idp: FakeIdp) -> None:
    clock = Clock()
    verifier = OidcVerifier(idp.provider(jwks_cache_seconds=60), clock=clock)
    verify(verifier, idp.sign())
    clock.now += 59
    verify(verifier, idp.sign())
    assert idp.jwks_hits == 1
    clock.now += 2
    verify(verifier, idp.sign())
    assert idp.jwks_hits == 2


def test_leeway_accepts_just_expired_token(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider(leeway_seconds=30))
    verify(verifier, idp.sign(exp=int(time.time()) - 10))
    strict = OidcVerifier(idp.provider(leeway_seconds=0))
    assert "token expired" in failure(strict, idp.sign(exp=int(time.time()) - 10))


def test_audience_list_in_token_and_config(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider(audience=["other", AUDIENCE]))
    verify(verifier, idp.sign(aud=["account", AUDIENCE]))


# -- time claims ---------------------------------------------------------------------------


def test_expired_token(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    message = failure(verifier, idp.sign(exp=int(time.time()) - 3600))
    assert message.startswith("token expired at ")


def test_missing_exp(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    assert "no expiry (exp)" in failure(verifier, idp.sign(exp=None))


@pytest.mark.parametrize("exp", ["tomorrow", True, float("inf"), float("nan"), [1]])
def test_non_numeric_exp(idp: FakeIdp, exp: object) -> None:
    verifier = OidcVerifier(idp.provider())
    assert "'exp' must be a number" in failure(verifier, idp.sign(exp=exp))


def test_nbf_in_future(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    message = failure(verifier, idp.sign(nbf=int(time.time()) + 600))
    assert message.startswith("token is not valid before ")


def test_iat_in_future(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    assert "issued in the future" in failure(verifier, idp.sign(iat=int(time.time()) + 600))


# -- issuer and audience -------------------------------------------------------------------


def test_wrong_issuer(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    message = failure(verifier, idp.sign(iss="https://evil.example.com"))
    assert message == f"token issuer 'https://evil.example.com' is not {idp.issuer!r}"
    assert idp.jwks_hits == 0  # refused before any key is fetched


def test_issuer_must_match_exactly(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    assert "token issuer" in failure(verifier, idp.sign(iss=idp.issuer + "/"))


def test_wrong_audience(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    message = failure(verifier, idp.sign(aud="someone-else"))
    assert message == "token audience 'someone-else' is not 'dbward'"


def test_missing_audience(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    assert "'aud'" in failure(verifier, idp.sign(aud=None))


# -- algorithms and keys -------------------------------------------------------------------


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(idp: FakeIdp, alg: str) -> None:
    verifier = OidcVerifier(idp.provider())
    token = _unsigned({"alg": alg, "typ": "JWT", "kid": "rsa1"}, idp.claims()) + "."
    assert looks_like_jwt(token)
    assert failure(verifier, token).startswith(f"algorithm {alg} is not allowed")


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = _unsigned(header, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize("form", ["pem", "der", "jwk-n", "jwk-json"])
def test_hs256_signed_with_the_public_key_is_refused(idp: FakeIdp, form: str) -> None:
    """The classic RS/HS confusion: the attacker signs with the public key as HMAC secret."""
    public = key("rsa1").private.public_key()
    secret = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-n": key("rsa1").jwk["n"].encode(),
        "jwk-json": json.dumps(key("rsa1").jwk).encode(),
    }[form]
    token = _hs256({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}, idp.claims(), secret)
    verifier = OidcVerifier(idp.provider())
    assert failure(verifier, token).startswith("algorithm HS256 is not allowed")


def test_hs_is_refused_even_if_configuration_allows_it(idp: FakeIdp) -> None:
    """Defence in depth: a provider built around validation, and a JWKS with an oct key."""
    shared = b"s3cret-shared-key-of-enough-length-for-hs256!"
    idp.publish(
        key("rsa1"),
        SigningKey("hmac", "HS256", None, {"kty": "oct", "kid": "hmac", "k": b64(shared)}),
    )
    provider = OidcProvider.model_construct(
        **{**idp.provider().model_dump(), "algorithms": ["RS256", "HS256"]}
    )
    verifier = OidcVerifier(provider)
    token = _hs256({"alg": "HS256", "kid": "hmac"}, idp.claims(), shared)
    assert failure(verifier, token).startswith("algorithm HS256 is not allowed")


def test_algorithm_outside_allow_list(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider(algorithms=["RS256"]))
    message = failure(verifier, idp.sign(key("ec1")))
    assert message.startswith("algorithm ES256 is not allowed")
    assert "(allowed: RS256)" in message


def test_key_type_must_fit_algorithm(idp: FakeIdp) -> None:
    """An RS256 token naming the kid of an EC key is refused before any signature check."""
    verifier = OidcVerifier(idp.provider())
    token = jwt.encode(idp.claims(), key("rsa1").private, algorithm="RS256", headers={"kid": "ec1"})
    assert "is a 'EC' key and cannot verify RS256 signatures" in failure(verifier, token)


def test_key_alg_must_match_token_alg(idp: FakeIdp) -> None:
    idp.publish(SigningKey("rsa1", "RS256", None, {**key("rsa1").jwk, "alg": "RS512"}))
    verifier = OidcVerifier(idp.provider())
    assert "is for 'RS512', but the token uses RS256" in failure(verifier, idp.sign())


def test_encryption_keys_are_not_used(idp: FakeIdp) -> None:
    idp.publish(SigningKey("rsa1", "RS256", None, {**key("rsa1").jwk, "use": "enc"}))
    verifier = OidcVerifier(idp.provider())
    assert "not for signatures" in failure(verifier, idp.sign())


def test_signature_by_another_key(idp: FakeIdp) -> None:
    forger = SigningKey("rsa1", "RS256", key("rsa-forger").private, {})
    verifier = OidcVerifier(idp.provider())
    assert "token signature does not verify" in failure(verifier, idp.sign(forger))


def test_tampered_payload(idp: FakeIdp) -> None:
    header, _, signature = idp.sign().split(".")
    payload = b64(json.dumps(idp.claims(email="mallory@example.com")).encode())
    token = f"{header}.{payload}.{signature}"
    verifier = OidcVerifier(idp.provider())
    assert "token signature does not verify" in failure(verifier, token, "mallory@example.com")


def test_short_rsa_key_is_refused(idp: FakeIdp) -> None:
    weak = _make_key("RSA", "weak", rsa_bits=1024)
    idp.publish(weak)
    verifier = OidcVerifier(idp.provider())
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        token = idp.sign(weak)
    assert "cannot be used" in failure(verifier, token)


@pytest.mark.parametrize(
    "token",
    ["", "not-a-token", "a.b", "a.b.c.d", "dbw_abc", "eyJhbGciOiJSUzI1NiJ9.%%%.sig", "x" * 20000],
)
def test_not_a_jwt(idp: FakeIdp, token: str) -> None:
    verifier = OidcVerifier(idp.provider())
    message = failure(verifier, token)
    assert message.startswith(("token is not a JWT", "token is longer than"))


def test_looks_like_jwt(idp: FakeIdp) -> None:
    assert looks_like_jwt(idp.sign())
    assert not looks_like_jwt("dbw_" + "a" * 43)
    assert not looks_like_jwt("hunter2")
    assert not looks_like_jwt("a.b.c")  # header is not JSON
    assert not looks_like_jwt(b64(b"[1]") + ".e30.sig")  # header is not an object


# -- key rotation and rate limit -----------------------------------------------------------


def test_unknown_kid_refetches_and_rotation_works(idp: FakeIdp) -> None:
    clock = Clock()
    verifier = OidcVerifier(idp.provider(), clock=clock)
    verify(verifier, idp.sign(key("rsa1")))
    assert idp.jwks_hits == 1
    idp.publish(key("rsa1"), key("rsa2"))  # the provider rolls a new key in
    clock.now += 31
    assert verify(verifier, idp.sign(key("rsa2"))).name == "Ada@Example.com"
    assert idp.jwks_hits == 2
    verify(verifier, idp.sign(key("rsa1")))  # old key still published and cached
    assert idp.jwks_hits == 2


def test_refetch_on_unknown_kid_is_rate_limited(idp: FakeIdp) -> None:
    clock = Clock()
    verifier = OidcVerifier(idp.provider(), clock=clock)
    verify(verifier, idp.sign())
    assert idp.jwks_hits == 1
    clock.now += 40
    # An attacker sends tokens with made-up key ids: one refetch, then none for 30 s.
    for n in range(20):
        stranger = SigningKey(f"made-up-{n}", "RS256", key("rsa1").private, {})
        message = failure(verifier, idp.sign(stranger))
        assert f"token key id (kid) 'made-up-{n}' is not among the signing keys" in message
        clock.now += 1
    assert idp.jwks_hits == 2
    # The provider rotates; after the interval the new key is found.
    idp.publish(key("rsa2"))
    failure(verifier, idp.sign(key("rsa2")))
    assert idp.jwks_hits == 2
    clock.now += 15
    verify(verifier, idp.sign(key("rsa2")))
    assert idp.jwks_hits == 3
    # rsa1 was rotated out: its tokens no longer verify.
    assert "is not among the signing keys" in failure(verifier, idp.sign(key("rsa1")))


def test_concurrent_verifications_share_one_fetch(idp: FakeIdp) -> None:
    idp.delay = 0.2
    verifier = OidcVerifier(idp.provider())
    tokens = [idp.sign(sub=f"user-{n}") for n in range(10)]

    async def all_at_once() -> list[Identity]:
        return await asyncio.gather(*(verifier.verify(t, "ada@example.com") for t in tokens))

    identities = asyncio.run(all_at_once())
    assert [i.subject for i in identities] == [f"user-{n}" for n in range(10)]
    assert idp.hits["/.well-known/openid-configuration"] == 1
    assert idp.jwks_hits == 1


def test_concurrent_unknown_kids_share_one_refetch(idp: FakeIdp) -> None:
    clock = Clock()
    verifier = OidcVerifier(idp.provider(), clock=clock)
    verify(verifier, idp.sign())
    idp.publish(key("rsa1"), key("rsa2"))
    idp.delay = 0.2
    clock.now += 31
    tokens = [idp.sign(key("rsa2"), sub=f"user-{n}") for n in range(5)]

    async def all_at_once() -> list[Identity]:
        return await asyncio.gather(*(verifier.verify(t, "ada@example.com") for t in tokens))

    assert len(asyncio.run(all_at_once())) == 5
    assert idp.jwks_hits == 2


# -- an unreachable or broken provider -----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_provider_down_is_reported_as_unreachable(idp: FakeIdp) -> None:
    token = idp.sign(iss=f"http://127.0.0.1:{_closed_port()}")
    issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
    verifier = OidcVerifier(OidcProvider(issuer=issuer, audience=AUDIENCE))
    message = failure(verifier, token)
    assert message.startswith("the identity provider is unreachable: ")
    assert issuer in message


def test_provider_recovers_after_backoff(idp: FakeIdp) -> None:
    clock = Clock()
    verifier = OidcVerifier(idp.provider(), clock=clock)
    idp.set_json("/jwks", {"error": "maintenance"}, status=503)
    assert "answered HTTP 503" in failure(verifier, idp.sign())
    assert "answered HTTP 503" in failure(verifier, idp.sign())
    assert idp.jwks_hits == 1  # the failure is remembered for a few seconds
    idp.publish(key("rsa1"))
    clock.now += 6
    verify(verifier, idp.sign())
    assert idp.jwks_hits == 2


def test_oversized_jwks_is_refused(idp: FakeIdp) -> None:
    idp.set_json("/jwks", {"keys": [], "padding": "x" * (1024 * 1024 + 10)})
    verifier = OidcVerifier(idp.provider())
    assert "larger than 1 MiB" in failure(verifier, idp.sign())


def test_jwks_that_is_not_json(idp: FakeIdp) -> None:
    idp.routes["/jwks"] = (200, b"<html>hello</html>")
    verifier = OidcVerifier(idp.provider())
    assert "is not valid JSON" in failure(verifier, idp.sign())


def test_discovery_without_jwks_uri(idp: FakeIdp) -> None:
    idp.set_json(
        "/.well-known/openid-configuration",
        {"issuer": idp.issuer, "jwks_uri": "file:///etc/passwd"},
    )
    verifier = OidcVerifier(idp.provider())
    assert "has no http(s) jwks_uri" in failure(verifier, idp.sign())


def test_fetch_refuses_other_schemes() -> None:
    with pytest.raises(AuthenticationError, match="only http and https"):
        asyncio.run(fetch_url("file:///etc/passwd"))


# -- user and groups -----------------------------------------------------------------------


def test_username_mismatch_is_28000(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    token = idp.sign()
    message = failure(verifier, token, "bob@example.com", error=AuthorizationError)
    assert message.startswith("token was issued to 'Ada@Example.com', not 'bob@example.com'")
    with pytest.raises(DbwardError) as caught:
        verify(verifier, token, "bob@example.com")
    assert caught.value.sqlstate == "28000"


def test_username_compare_is_exact_for_non_emails(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider(username_claim="preferred_username"))
    token = idp.sign(preferred_username="Ada")
    assert verify(verifier, token, "Ada").name == "Ada"
    failure(verifier, token, "ada", error=AuthorizationError)


def test_username_falls_back_to_preferred_username_then_sub(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    assert verify(verifier, idp.sign(email=None, preferred_username="ada"), "ada").name == "ada"
    assert verify(verifier, idp.sign(email=None), "00u1abc").name == "00u1abc"


@pytest.mark.parametrize(
    ("claim", "claims", "groups"),
    [
        ("groups", {"groups": ["dba", "eng", "dba"]}, ("dba", "eng")),
        ("groups", {"groups": "dba eng"}, ("dba", "eng")),
        ("groups", {"groups": "dba, eng,ops"}, ("dba", "eng", "ops")),
        ("groups", {"groups": None}, ()),
        (
            "realm_access.roles",
            {"realm_access": {"roles": ["admin", "reader"]}},
            ("admin", "reader"),
        ),
        ("realm_access.roles", {"realm_access": {}}, ()),
        ("https://example.com/groups", {"https://example.com/groups": ["x"]}, ("x",)),
    ],
)
def test_groups_claim(
    idp: FakeIdp, claim: str, claims: dict[str, Any], groups: tuple[str, ...]
) -> None:
    verifier = OidcVerifier(idp.provider(groups_claim=claim))
    assert verify(verifier, idp.sign(**claims)).groups == groups


def test_groups_claim_of_wrong_type(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider())
    assert "must be a list of group names or a string" in failure(verifier, idp.sign(groups=7))
    assert "must hold only strings" in failure(verifier, idp.sign(groups=["a", 1]))


def test_kind_comes_from_provider(idp: FakeIdp) -> None:
    verifier = OidcVerifier(idp.provider(kind="agent"))
    assert verify(verifier, idp.sign()).kind is IdentityKind.AGENT
