"""``dbward login``, ``dbward logout`` and ``dbward connect``: short-lived access for people.

``login`` signs the person in at the configured OpenID Connect provider with
the device authorization flow (the provider and client come from the dbward
API, so only its address is needed). ``connect`` then asks the API for a
one-time credential bound to that identity and starts psql with it (in
``PGPASSWORD``, never on the command line), or prints a URI for other clients.
"""

from __future__ import annotations

import os
import shutil
from typing import Any
from urllib.parse import quote, urlsplit

import click
import httpx

from dbward.cli.common import _fail, console
from dbward.cli.remote import Login, Remote, login_file, token_expiry
from dbward.errors import DbwardError
from dbward.identity import device_flow


def _login_settings(api: str, verify: str | bool) -> dict[str, Any]:
    try:
        with httpx.Client(timeout=15.0, verify=verify) as client:
            answer = client.get(api.rstrip("/") + "/api/v1/login")
            answer.raise_for_status()
            settings: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DbwardError(f"cannot read the login settings of {api}: {exc}") from None
    if not settings.get("issuer") or not settings.get("client_id"):
        raise DbwardError(
            f"{api} has no login configured (identity.oidc and identity.login_client_id)"
        )
    return settings


@click.command()
@click.option("--api", default=None, help="the dbward API URL (default: DBWARD_API)")
@click.option("--ca-file", default=None, help="CA file to trust for the API's TLS")
def login(api: str | None, ca_file: str | None) -> None:
    """Sign in with your identity provider (device authorization flow)."""
    api = api or os.environ.get("DBWARD_API")
    previous = Login.load()
    if api is None and previous is not None:
        api = previous.api
    if not api:
        raise click.UsageError("give --api URL (or set DBWARD_API)")
    verify: str | bool = ca_file or True
    try:
        settings = _login_settings(api, verify)
        with httpx.Client(timeout=15.0) as client:
            document = device_flow.discover(settings["issuer"], client)
            code = device_flow.start(document, settings["client_id"], settings["scopes"], client)
            where = code.verification_uri_complete or code.verification_uri
            console.print(f"To sign in, open [bold]{where}[/bold]")
            console.print(f"and enter the code [bold]{code.user_code}[/bold]")
            tokens = device_flow.poll(document, settings["client_id"], code, client)
    except DbwardError as exc:
        _fail(exc)
        return
    Login(
        api=api.rstrip("/"),
        issuer=settings["issuer"],
        client_id=settings["client_id"],
        id_token=tokens.id_token,
        refresh_token=tokens.refresh_token,
        expires_at=token_expiry(tokens.id_token) or tokens.expires_at,
        verify=verify,
    ).save()
    try:
        me = Remote(api).call("GET", "/api/v1/me")
    except DbwardError as exc:
        _fail(exc)
        return
    groups = ", ".join(me.get("groups", [])) or "-"
    console.print(f"signed in as [bold]{me['name']}[/bold] (groups: {groups})")


@click.command()
def logout() -> None:
    """Forget the sign-in kept by dbward login."""
    path = login_file()
    path.unlink(missing_ok=True)
    console.print("signed out")


@click.command()
@click.argument("connection")
@click.option("--api", default=None, help="the dbward API URL (default: dbward login's)")
@click.option("--uri", "print_uri", is_flag=True, help="print a connection URI, do not run psql")
@click.option("--host", default=None, help="dbward's address as your client reaches it")
@click.option("--port", type=int, default=None)
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def connect(
    connection: str,
    api: str | None,
    print_uri: bool,
    host: str | None,
    port: int | None,
    psql_args: tuple[str, ...],
) -> None:
    """Connect through dbward with a one-time credential (psql, or --uri for any client)."""
    try:
        remote = Remote(api)
        issued = remote.call("POST", "/api/v1/credentials", json={"connection": connection})
    except DbwardError as exc:
        _fail(exc)
        return
    host = host or issued.get("host") or urlsplit(remote.base).hostname or "127.0.0.1"
    port = port or issued.get("port") or 6432
    userinfo = quote(issued["user"], safe="")
    target = f"@{host}:{port}/{quote(connection, safe='')}?sslmode=require"
    if print_uri:
        click.echo(f"postgresql://{userinfo}:{quote(issued['password'], safe='')}{target}")
        console.print("valid for one connection, until it is used or expires")
        return
    psql = shutil.which("psql")
    if psql is None:
        _fail(DbwardError("psql is not installed here: use dbward connect --uri"))
        return
    env = dict(os.environ, PGPASSWORD=issued["password"])
    os.execve(psql, ["psql", f"postgresql://{userinfo}{target}", *psql_args], env)  # noqa: S606
