"""Signing people in to the console: OpenID Connect authorization code flow with PKCE.

``/console/login`` sends the browser to the provider with a fresh state, nonce
and S256 code challenge (kept in a short-lived HttpOnly cookie); the callback
checks the state, redeems the code with the verifier, verifies the ID token
like any other (signature, issuer, audience, expiry) and its nonce, and opens
a session. Sessions live in this process (the API runs in one), behind a
random id in an HttpOnly, Secure, SameSite=Strict cookie; each has its own
CSRF token, which every state-changing request made with the cookie must echo
in ``X-CSRF-Token`` (or a form's ``csrf`` field).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from dbward.config import ConsoleConfig
from dbward.errors import AuthenticationError
from dbward.identity.authenticator import Authenticator
from dbward.identity.models import Identity

SESSION_COOKIE = "dbward_session"
LOGIN_COOKIE = "dbward_login"
_LOGIN_TTL = 600  # seconds a sign-in may take at the provider


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    identity: Identity
    csrf: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ConsoleLogins:
    """The console's sign-in flow and its open sessions."""

    def __init__(
        self,
        settings: ConsoleConfig,
        issuer: str,
        authenticator: Authenticator,
        client_secret: str | None,
        sealing_key: bytes,
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.authenticator = authenticator
        self._secret = client_secret
        self._key = sealing_key  # signs the short-lived login cookie
        self._sessions: dict[str, ConsoleSession] = {}
        self._discovery: dict[str, Any] | None = None

    @property
    def redirect_uri(self) -> str:
        return self.settings.public_url.rstrip("/") + "/console/callback"

    async def _document(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.get(url)
                answer.raise_for_status()
                self._discovery = answer.json()
        return self._discovery

    # the login cookie: what the callback must find again ----------------------------------

    def _seal(self, data: dict[str, Any]) -> str:
        body = _b64(json.dumps(data, separators=(",", ":")).encode())
        mac = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def _unseal(self, value: str) -> dict[str, Any]:
        body, _, mac = value.partition(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, expected):
            raise AuthenticationError("the sign-in cookie was altered: sign in again")
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if data.get("exp", 0) < time.time():
            raise AuthenticationError("the sign-in took too long: sign in again")
        return data

    async def start(self, after: str) -> tuple[str, str]:
        """Where to send the browser, and the login cookie's value."""
        document = await self._document()
        verifier = secrets.token_urlsafe(48)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        cookie = self._seal(
            {
                "state": state,
                "nonce": nonce,
                "verifier": verifier,
                "after": after if after.startswith("/console") else "/console/",
                "exp": time.time() + _LOGIN_TTL,
            }
        )
        return f"{document['authorization_endpoint']}?{query}", cookie

    async def finish(self, code: str, state: str, cookie: str | None) -> tuple[ConsoleSession, str]:
        """The session the provider's answer opens, and where to go next."""
        if not cookie:
            raise AuthenticationError("no sign-in is in progress in this browser: sign in again")
        pending = self._unseal(cookie)
        if not hmac.compare_digest(str(pending.get("state")), state):
            raise AuthenticationError("the sign-in answer does not match this browser's request")
        document = await self._document()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.settings.client_id,
            "code_verifier": pending["verifier"],
        }
        async with httpx.AsyncClient(timeout=10.0) as client:
            if self._secret:  # a confidential client authenticates (client_secret_basic)
                auth = httpx.BasicAuth(self.settings.client_id, self._secret)
                answer = await client.post(document["token_endpoint"], data=form, auth=auth)
            else:
                answer = await client.post(document["token_endpoint"], data=form)
        if answer.status_code != 200:
            try:
                error = answer.json().get("error", answer.status_code)
            except ValueError:
                error = answer.status_code
            raise AuthenticationError(f"the identity provider refused the sign-in: {error}")
        id_token = answer.json().get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationError("the identity provider sent no ID token")
        identity = await self.authenticator.bearer(id_token)
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if not hmac.compare_digest(str(claims.get("nonce", "")), str(pending["nonce"])):
            raise AuthenticationError("the ID token's nonce does not match this sign-in")
        return self.open(identity), str(pending["after"])

    # sessions ----------------------------------------------------------------------------

    def open(self, identity: Identity) -> ConsoleSession:
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
        session = ConsoleSession(
            secrets.token_urlsafe(32),
            identity,
            secrets.token_urlsafe(24),
            now + self.settings.session_ttl,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None or session.expires <= time.time():
            self._sessions.pop(session_id or "", None)
            return None
        return session

    def close(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)
