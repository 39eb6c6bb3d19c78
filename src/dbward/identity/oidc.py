"""OIDC access and ID tokens: JWKS key cache and JWT verification.

The only I/O here is the HTTP fetch of the issuer's discovery document and
JWKS, run in a worker thread. Every failure is an :class:`AuthenticationError`
whose message names the cause and never contains the token or key material.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import json
import math
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt

from dbward.config import OidcProvider
from dbward.errors import AuthenticationError, AuthorizationError
from dbward.identity.attribution import from_claims
from dbward.identity.models import Identity

Fetch = Callable[[str], Awaitable[bytes]]
"""Fetch a URL and return the response body, or raise :class:`AuthenticationError`."""

FETCH_TIMEOUT = 5.0
MAX_RESPONSE_BYTES = 1024 * 1024
REFETCH_INTERVAL = 30.0
"""Least time between two JWKS fetches caused by a token with an unknown ``kid``."""
FAILURE_BACKOFF = 5.0
"""After a failed fetch, the same error is given without asking again for this long."""
MAX_TOKEN_LENGTH = 16 * 1024

_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_TIME_CLAIMS = ("exp", "nbf", "iat")
# alg -> (kty, curves the key may have; empty: any)
_KEY_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    **{f"RS{n}": ("RSA", frozenset()) for n in (256, 384, 512)},
    **{f"PS{n}": ("RSA", frozenset()) for n in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}


# -- fetching ------------------------------------------------------------------------------


def _build_opener() -> urllib.request.OpenerDirector:
    """An opener that speaks http and https only (no file:, ftp: or data:, even on redirect)."""
    opener = urllib.request.OpenerDirector()
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ]
    for handler in handlers:
        opener.add_handler(handler)
    return opener


_OPENER = _build_opener()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT:g} s"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _reason(reason)
        return str(reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fetch_blocking(url: str) -> bytes:
    request = urllib.request.Request(  # noqa: S310 (scheme checked by fetch_url)
        url, headers={"Accept": "application/json", "User-Agent": "dbward"}
    )
    try:
        with _OPENER.open(request, timeout=FETCH_TIMEOUT) as response:
            body: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise AuthenticationError(
            f"the identity provider answered HTTP {exc.code} for {url}"
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise AuthenticationError(
            f"the identity provider is unreachable: cannot fetch {url} ({_reason(exc)})"
        ) from exc
    if len(body) > MAX_RESPONSE_BYTES:
        raise AuthenticationError(
            f"the identity provider's answer from {url} is larger than "
            f"{MAX_RESPONSE_BYTES // 1024 // 1024} MiB"
        )
    return body


async def fetch_url(url: str) -> bytes:
    """GET ``url`` (http or https) in a worker thread, with a timeout and a size cap."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise AuthenticationError(f"cannot fetch {url}: only http and https URLs are supported")
    return await asyncio.to_thread(_fetch_blocking, url)


def _json_object(body: bytes, url: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise AuthenticationError(f"the {what} at {url} is not valid JSON") from None
    if not isinstance(data, dict):
        raise AuthenticationError(f"the {what} at {url} is not a JSON object")
    return data


# -- key cache -----------------------------------------------------------------------------


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JwksCache:
    """The signing keys of one issuer, fetched on demand and kept for ``ttl`` seconds.

    A token whose ``kid`` is not in the cached set causes one refetch (key
    rotation), at most once per ``refetch_interval``. Concurrent callers share
    one in-flight fetch.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None,
        fetch: Fetch,
        ttl: float,
        refetch_interval: float = REFETCH_INTERVAL,
        failure_backoff: float = FAILURE_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._configured_uri = jwks_uri
        self._discovered_uri: str | None = None
        self._fetch = fetch
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._failure_backoff = failure_backoff
        self._clock = clock
        self._keys: list[dict[str, Any]] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._failure: tuple[float, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._built: dict[tuple[int, str], jwt.PyJWK | None] = {}

    async def keys_for(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        """The keys that may have signed a token with this ``kid`` and ``alg``."""
        if self._keys is None or self._clock() - self._fetched_at >= self._ttl:
            await self._refresh()
        if kid is not None and not self._has_kid(kid) and self._may_refetch():
            await self._refresh()
        return self._select(kid, alg)

    # -- selection

    def _has_kid(self, kid: str) -> bool:
        return any(entry.get("kid") == kid for entry in self._keys or ())

    def _select(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        keys = self._keys or []
        indexes = [i for i, entry in enumerate(keys) if kid is None or entry.get("kid") == kid]
        if not indexes:
            if kid is None:
                raise AuthenticationError(f"the identity provider {self._issuer} publishes no keys")
            raise AuthenticationError(
                f"token key id (kid) {_short(kid)} is not among the signing keys of "
                f"{self._issuer}; if the provider rotated its keys, retry in "
                f"{self._refetch_interval:g} s"
            )
        usable: list[jwt.PyJWK] = []
        reasons: list[str] = []
        for index in indexes:
            key, reason = self._build(index, alg)
            if key is not None:
                usable.append(key)
            elif reason:
                reasons.append(reason)
        if not usable:
            if kid is not None and reasons:
                raise AuthenticationError(f"key {_short(kid)} of {self._issuer} {reasons[0]}")
            raise AuthenticationError(
                f"the identity provider {self._issuer} publishes no key that can verify "
                f"{alg} signatures"
            )
        return usable

    def _build(self, index: int, alg: str) -> tuple[jwt.PyJWK | None, str]:
        entry = (self._keys or [])[index]
        kty, curves = _KEY_TYPES.get(alg, ("?", frozenset()))
        if entry.get("use") not in (None, "sig"):
            return None, f"is for {_short(entry.get('use'))}, not for signatures"
        if entry.get("alg") not in (None, alg):
            return None, f"is for {_short(entry.get('alg'))}, but the token uses {alg}"
        if entry.get("kty") != kty:
            return None, f"is a {_short(entry.get('kty'))} key and cannot verify {alg} signatures"
        if curves and entry.get("crv") not in curves:
            return None, f"is on curve {_short(entry.get('crv'))}, which {alg} does not use"
        cache_key = (index, alg)
        if cache_key not in self._built:
            try:
                self._built[cache_key] = jwt.PyJWK(entry, algorithm=alg)
            except jwt.PyJWTError:
                self._built[cache_key] = None
        key = self._built[cache_key]
        return key, "" if key is not None else "is malformed"

    # -- fetching

    def _may_refetch(self) -> bool:
        in_flight = self._task is not None and not self._task.done()
        return in_flight or self._clock() - self._attempted_at >= self._refetch_interval

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            if self._failure is not None:
                failed_at, message = self._failure
                if self._clock() - failed_at < self._failure_backoff:
                    raise AuthenticationError(message)
            self._attempted_at = self._clock()
            task = loop.create_task(self._load())
            task.add_done_callback(_consume_result)
            self._task = task
        await asyncio.shield(task)

    async def _load(self) -> None:
        try:
            uri = await self._jwks_uri()
            try:
                body = await self._fetch(uri)
            except AuthenticationError:
                self._discovered_uri = None  # look it up again next time: it may have moved
                raise
            keys = self._parse(body, uri)
        except AuthenticationError as exc:
            self._failure = (self._clock(), exc.message)
            raise
        self._failure = None
        self._keys = keys
        self._fetched_at = self._clock()
        self._built.clear()

    async def _jwks_uri(self) -> str:
        if self._configured_uri is not None:
            return self._configured_uri
        if self._discovered_uri is None:
            url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = _json_object(await self._fetch(url), url, "OpenID discovery document")
            uri = document.get("jwks_uri")
            if not isinstance(uri, str) or urlsplit(uri).scheme not in ("http", "https"):
                raise AuthenticationError(
                    f"the OpenID discovery document at {url} has no http(s) jwks_uri; "
                    "set jwks_uri for this provider in the configuration"
                )
            self._discovered_uri = uri
        return self._discovered_uri

    @staticmethod
    def _parse(body: bytes, uri: str) -> list[dict[str, Any]]:
        document = _json_object(body, uri, "JWKS")
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise AuthenticationError(f"the JWKS at {uri} has no 'keys' list")
        return [key for key in keys if isinstance(key, dict) and isinstance(key.get("kty"), str)]


def _consume_result(task: asyncio.Task[None]) -> None:
    # Waiters may all have been cancelled: retrieve the outcome so it is not reported as lost.
    if not task.cancelled():
        task.exception()


# -- verification --------------------------------------------------------------------------


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment.rstrip("=") + "=" * (-len(segment.rstrip("=")) % 4))


def looks_like_jwt(secret: str) -> bool:
    """True when ``secret`` has the shape of a compact JWS: ``header.payload.signature``."""
    parts = secret.split(".")
    if len(parts) != 3 or len(secret) > MAX_TOKEN_LENGTH:
        return False
    if not all(_B64URL.fullmatch(part) for part in parts[:2]):
        return False
    if parts[2] and not _B64URL.fullmatch(parts[2]):
        return False
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error, RecursionError):
        return False
    return isinstance(header, dict) and "alg" in header


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim of a JWT, read without verifying anything (for routing only)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def _utc(timestamp: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp:g}"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _claim_at(claims: dict[str, Any], path: str) -> object:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _groups(claims: dict[str, Any], path: str) -> tuple[str, ...]:
    value = _claim_at(claims, path)
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = list(re.split(r"[\s,]+", value))
    elif isinstance(value, list):
        items = value
    else:
        raise AuthenticationError(
            f"token claim {path!r} must be a list of group names or a string, "
            f"not {type(value).__name__}"
        )
    if not all(isinstance(item, str) for item in items):
        raise AuthenticationError(f"token claim {path!r} must hold only strings")
    return tuple(dict.fromkeys(item for item in items if isinstance(item, str) and item))


def _alg_text(alg: object) -> str:
    if isinstance(alg, str) and re.fullmatch(r"[A-Za-z0-9+_-]{1,20}", alg):
        return alg
    return _short(alg, 30)


def _same_user(token_user: str, claimed_user: str) -> bool:
    if "@" in token_user:
        return token_user.casefold() == claimed_user.casefold()
    return token_user == claimed_user


class OidcVerifier:
    """Verifies the JWTs of one OpenID Connect provider and turns them into identities."""

    def __init__(
        self,
        provider: OidcProvider,
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self._algorithms = frozenset(
            alg for alg in provider.algorithms if alg in _KEY_TYPES
        )  # never none or HS*, whatever the configuration says
        audience = provider.audience
        self._audiences: tuple[str, ...] = (
            (audience,) if isinstance(audience, str) else tuple(audience)
        )
        self.keys = JwksCache(
            provider.issuer,
            jwks_uri=provider.jwks_uri,
            fetch=fetch if fetch is not None else fetch_url,
            ttl=provider.jwks_cache_seconds,
            refetch_interval=provider.jwks_refetch_seconds,
            clock=clock,
        )

    async def verify(self, token: str, claimed_user: str | None) -> Identity:
        """Verify ``token`` and check it was issued to ``claimed_user``.

        Raises :class:`AuthenticationError` when the token is not valid and
        :class:`AuthorizationError` when it is valid but names another user.
        """
        header, claims = self._unverified(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            allowed = ", ".join(sorted(self._algorithms))
            raise AuthenticationError(
                f"algorithm {_alg_text(alg)} is not allowed for tokens of "
                f"{self.provider.issuer} (allowed: {allowed})"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationError("token key id (kid) must be a string")
        self._check_claim_shapes(claims)
        keys = await self.keys.keys_for(kid, alg)
        verified = self._decode(token, keys, alg, claims)
        return self._identity(verified, claimed_user)

    # -- steps

    @staticmethod
    def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        if not looks_like_jwt(token):
            raise AuthenticationError("token is not a JWT (expected header.payload.signature)")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError(
                "token is not a JWT: its header or payload is malformed"
            ) from None
        return header, claims

    def _check_claim_shapes(self, claims: dict[str, Any]) -> None:
        issuer = claims.get("iss")
        if issuer is None:
            raise AuthenticationError("token has no issuer (iss) claim")
        if issuer != self.provider.issuer:
            raise AuthenticationError(
                f"token issuer {_short(issuer)} is not {self.provider.issuer!r}"
            )
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise AuthenticationError(f"token claim {name!r} must be a number of seconds")
        if claims.get("exp") is None:
            raise AuthenticationError("token has no expiry (exp) claim")

    def _decode(
        self, token: str, keys: Sequence[jwt.PyJWK], alg: str, claims: dict[str, Any]
    ) -> dict[str, Any]:
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._audiences,
                    issuer=self.provider.issuer,
                    leeway=self.provider.leeway_seconds,
                    options={
                        "require": ["exp", "iss", "aud"],
                        "enforce_minimum_key_length": True,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise AuthenticationError(self._explain(exc, claims)) from None
        raise AuthenticationError(
            f"token signature does not verify against the keys of {self.provider.issuer}"
        )

    def _explain(self, exc: jwt.PyJWTError, claims: dict[str, Any]) -> str:
        leeway = self.provider.leeway_seconds
        now = time.time()
        if isinstance(exc, jwt.ExpiredSignatureError):
            return (
                f"token expired at {_utc(float(claims['exp']))} (now {_utc(now)}); "
                "get a fresh token from the identity provider"
            )
        if isinstance(exc, jwt.ImmatureSignatureError):
            nbf = claims.get("nbf")
            if nbf is not None and float(nbf) > now + leeway:
                return f"token is not valid before {_utc(float(nbf))} (now {_utc(now)})"
            return f"token was issued in the future ({_utc(float(claims['iat']))}, now {_utc(now)})"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"token has no {exc.claim!r} claim"
        if isinstance(exc, jwt.InvalidAudienceError):
            expected = (
                repr(self._audiences[0])
                if len(self._audiences) == 1
                else f"one of {list(self._audiences)!r}"
            )
            return f"token audience {_short(claims.get('aud'))} is not {expected}"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"token issuer {_short(claims.get('iss'))} is not {self.provider.issuer!r}"
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return "token algorithm is not allowed"
        if isinstance(exc, jwt.InvalidKeyError | jwt.PyJWKError):
            return (
                f"the signing key of {self.provider.issuer} cannot be used "
                "(malformed, or shorter than the minimum safe size)"
            )
        if isinstance(exc, jwt.exceptions.InvalidSubjectError):
            return "token claim 'sub' must be a string"
        if isinstance(exc, jwt.exceptions.InvalidJTIError):
            return "token claim 'jti' must be a string"
        if isinstance(exc, jwt.DecodeError):
            return "token is not a valid JWT"
        return "token is not valid"

    def _identity(self, claims: dict[str, Any], claimed_user: str | None) -> Identity:
        username = self._username(claims)
        if claimed_user is not None and not _same_user(username, claimed_user):
            raise AuthorizationError(
                f"token was issued to {username!r}, not {claimed_user!r}: "
                f"connect as user {username!r}"
            )
        subject = claims.get("sub")
        return Identity(
            name=username,
            kind=self.provider.kind,
            groups=_groups(claims, self.provider.groups_claim),
            provider=f"oidc:{self.provider.issuer}",
            subject=subject if isinstance(subject, str) and subject else username,
            expires_at=float(claims["exp"]),
            attributes=tuple(from_claims(claims).items()),
        )

    def _username(self, claims: dict[str, Any]) -> str:
        names = dict.fromkeys((self.provider.username_claim, "preferred_username", "sub"))
        for name in names:
            value = _claim_at(claims, name)
            if isinstance(value, str) and value:
                return value
        raise AuthenticationError(
            f"token names no user: it has no {', '.join(repr(n) for n in names)} claim"
        )
