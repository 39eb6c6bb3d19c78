"""Talking to a running dbward's API from the command line, as a signed-in person.

``dbward login`` keeps the API's address and the person's tokens in
``$XDG_CONFIG_HOME/dbward/login.json`` (mode 0600); later commands send the ID
token as a bearer token, refreshing it when it has expired. A dbward token in
``DBWARD_TOKEN`` (services, automation) is used instead when set.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dbward.errors import AuthenticationError, DbwardError
from dbward.identity import device_flow

_SKEW = 30.0  # seconds: refresh a token this long before it expires


def login_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dbward" / "login.json"


@dataclass(frozen=True, slots=True)
class Login:
    api: str
    issuer: str
    client_id: str
    id_token: str
    refresh_token: str | None
    expires_at: float
    verify: str | bool = True  # TLS verification for the API: True, False, or a CA file

    def save(self) -> None:
        path = login_file()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.__dict__ if hasattr(self, "__dict__") else _fields(self), out)
        temporary.replace(path)

    @staticmethod
    def load() -> Login | None:
        path = login_file()
        try:
            return Login(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise DbwardError(f"cannot read {path}: {exc}; run dbward login again") from None


def _fields(login: Login) -> dict[str, Any]:
    return {name: getattr(login, name) for name in Login.__slots__}


def token_expiry(token: str) -> float:
    """The ``exp`` of a JWT, unverified (only to know when to refresh; the API verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0


class Remote:
    """An API client with the caller's credential."""

    def __init__(self, api: str | None, token: str | None = None) -> None:
        login = Login.load()
        self.login = login
        base = api or os.environ.get("DBWARD_API") or (login.api if login else None)
        if not base:
            raise DbwardError(
                "which dbward? give --api URL (or set DBWARD_API), or run dbward login first"
            )
        self.base = base.rstrip("/")
        self.verify: str | bool = login.verify if login and login.api == self.base else True
        self._token = token or os.environ.get("DBWARD_TOKEN")

    def _bearer(self) -> str:
        if self._token:
            return self._token
        login = self.login
        if login is None:
            raise AuthenticationError("not signed in: run dbward login (or set DBWARD_TOKEN)")
        if login.expires_at - _SKEW > time.time():
            return login.id_token
        if not login.refresh_token:
            raise AuthenticationError("the sign-in expired: run dbward login again")
        with httpx.Client(timeout=15.0) as client:
            document = device_flow.discover(login.issuer, client)
            tokens = device_flow.refresh(document, login.client_id, login.refresh_token, client)
        fresh = Login(
            login.api,
            login.issuer,
            login.client_id,
            tokens.id_token,
            tokens.refresh_token,
            token_expiry(tokens.id_token) or tokens.expires_at,
            login.verify,
        )
        fresh.save()
        self.login = fresh
        return fresh.id_token

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._bearer()}"}
        try:
            with httpx.Client(timeout=30.0, verify=self.verify) as client:
                answer = client.request(method, self.base + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise DbwardError(f"cannot reach the dbward API at {self.base}: {exc}") from None
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise DbwardError(f"the dbward API refused ({answer.status_code}): {detail}")
        return answer.json()
