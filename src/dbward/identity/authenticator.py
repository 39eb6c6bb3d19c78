"""Turn the user name and password a client sent into a verified identity.

The password is never a database password: it is either a dbward token
(``dbw_...``) or a JWT from one of the configured OpenID Connect providers,
chosen by the token's (unverified) issuer and then fully verified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from dbward.config import IdentityConfig
from dbward.errors import AuthenticationError, ConfigError
from dbward.identity.models import Identity
from dbward.identity.oidc import Fetch, OidcVerifier, looks_like_jwt, unverified_issuer
from dbward.identity.tokens import TOKEN_PREFIX, TokenStore

CREDENTIAL_PREFIX = "dbwc_"


def _shown(value: str, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Authenticator:
    """Routes each login to the token store or the OIDC verifier of the token's issuer."""

    def __init__(
        self,
        config: IdentityConfig,
        token_store: TokenStore | None,
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        redeem: Callable[[str, str, str], Identity] | None = None,
    ) -> None:
        # One-time credentials from `dbward connect`: (secret, user, connection) -> identity.
        self._redeem = redeem
        self._tokens = token_store if config.tokens else None
        self._tokens_enabled = config.tokens
        self._verifiers: dict[str, OidcVerifier] = {}
        for provider in config.oidc:
            if provider.issuer in self._verifiers:
                raise ConfigError(
                    f"identity.oidc: issuer {provider.issuer!r} is listed twice; give one "
                    "provider per issuer (audience may be a list)"
                )
            self._verifiers[provider.issuer] = OidcVerifier(provider, fetch=fetch, clock=clock)

    @property
    def verifiers(self) -> dict[str, OidcVerifier]:
        return dict(self._verifiers)

    async def authenticate(self, user: str, secret: str, connection: str = "") -> Identity:
        """The identity behind ``secret``, which must have been issued to ``user`` (and a
        one-time credential, for ``connection``)."""
        secret = secret.strip()
        if not secret:
            raise AuthenticationError(
                "no password was given: send an OIDC token or a dbward token as the password"
            )
        if not user:
            raise AuthenticationError("no user name was given: connect as the token's user")
        if secret.startswith(TOKEN_PREFIX):
            return self._token(user, secret)
        if secret.startswith(CREDENTIAL_PREFIX) and self._redeem is not None:
            return await asyncio.to_thread(self._redeem, secret, user, connection)
        if looks_like_jwt(secret):
            return await self._oidc(user, secret)
        raise AuthenticationError(
            "password authentication is not accepted: "
            "give an OIDC token or a dbward token as the password"
        )

    def _token(self, user: str, secret: str) -> Identity:
        if self._tokens is None:
            reason = (
                "they are turned off (identity.tokens)"
                if not self._tokens_enabled
                else "no token store is open"
            )
            raise AuthenticationError(f"dbward tokens are not accepted here: {reason}")
        return self._tokens.verify(secret, user)

    async def bearer(self, token: str) -> Identity:
        """The identity behind an OIDC ID token sent to the API (no user name to match)."""
        return await self._oidc(None, token)

    async def _oidc(self, user: str | None, secret: str) -> Identity:
        issuer = unverified_issuer(secret)
        if issuer is None:
            raise AuthenticationError("token has no issuer (iss) claim")
        verifier = self._verifiers.get(issuer)
        if verifier is None:
            raise AuthenticationError(
                f"no identity provider is configured for issuer {_shown(issuer)}"
            )
        return await verifier.verify(secret, user)
