"""``dbward approvals`` and ``dbward access``: answering and asking, through the API.

These commands act as the signed-in person (``dbward login``) or the dbward
token in ``DBWARD_TOKEN``: the API checks who they are, and the request's own
rules decide whether a vote counts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Column, Table

from dbward.cli.common import _fail, console
from dbward.cli.remote import Remote
from dbward.errors import DbwardError
from dbward.identity.tokens import parse_ttl

api_option = click.option(
    "--api", default=None, help="the dbward API URL (default: DBWARD_API, or dbward login's)"
)
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _call(api: str | None, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return Remote(api).call(method, path, **kwargs)
    except DbwardError as exc:
        _fail(exc)


def _seconds(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _show(request: dict[str, Any]) -> None:
    out = Console()
    out.print(f"[bold]{request['id']}[/bold]  {request['kind']}  [bold]{request['status']}[/bold]")
    out.print(f"requester   {request['requester']} ({request['requester_kind']})")
    out.print(f"connection  {request['connection']} ({request['environment']})")
    out.print(f"rule        {request['rule']}")
    needs = f"{request['quorum']} of {', '.join(request['approver_groups'])}"
    out.print(f"needs       {needs}" + (" (reason required)" if request["reason_required"] else ""))
    out.print(f"created     {_when(request['created'])}; expires {_when(request['expires'])}")
    if request["kind"] == "statement":
        out.print("statement:")
        out.print(request["statement"], markup=False, highlight=False)
        if request["parameters"]:
            out.print("parameters: " + ", ".join(request["parameters"]), markup=False)
    else:
        hours = request["duration"] / 3600
        out.print(f"role        {request['role']} for {hours:g} h")
        if request["break_glass"]:
            reviewed = request["reviewed_by"] or "not yet"
            out.print(f"break-glass reviewed: {reviewed}")
    if request["reason"]:
        out.print(f"reason      {request['reason']}", markup=False)
    for vote in request["votes"]:
        verb = "approved" if vote["approve"] else "rejected"
        extra = f" (window {vote['window']:g} s)" if vote.get("window") else ""
        why = f": {vote['reason']}" if vote["reason"] else ""
        out.print(f"  {_when(vote['at'])} {vote['approver']} {verb} via {vote['via']}{extra}{why}")
    if request["approved_until"]:
        out.print(f"valid until {_when(request['approved_until'])}")


@click.group()
def approvals() -> None:
    """Held statements and access requests: list, show, approve, reject."""


@approvals.command("list")
@api_option
@json_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["pending", "approved", "rejected", "expired", "executed", "revoked"]),
    help="(repeatable; default pending)",
)
@click.option("--all", "every", is_flag=True, help="every status")
@click.option("--kind", type=click.Choice(["statement", "access"]))
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
def approvals_list(
    api: str | None,
    as_json: bool,
    statuses: tuple[str, ...],
    every: bool,
    kind: str | None,
    limit: int,
) -> None:
    """Requests you made or can approve (auditors and admins: all)."""
    params: dict[str, Any] = {"limit": limit}
    if not every:
        params["status"] = list(statuses or ("pending",))
    if kind:
        params["kind"] = kind
    found = _call(api, "GET", "/api/v1/approvals", params=params)["requests"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(
        Column("id", no_wrap=True, min_width=16),
        "kind",
        "status",
        "requester",
        "connection",
        "what",
        "votes",
        "created",
    )
    for r in found:
        what = r["statement"] if r["kind"] == "statement" else f"role {r['role']}"
        what = " ".join(what.split())
        table.add_row(
            r["id"],
            r["kind"],
            r["status"],
            r["requester"],
            r["connection"],
            what[:60] + ("…" if len(what) > 60 else ""),
            f"{sum(1 for v in r['votes'] if v['approve'])}/{r['quorum']}",
            _when(r["created"]),
        )
    Console().print(table)
    if not found:
        console.print("no requests")


@approvals.command("show")
@api_option
@json_option
@click.argument("request_id")
def approvals_show(api: str | None, as_json: bool, request_id: str) -> None:
    """One request: what, who, where, the votes so far."""
    found = _call(api, "GET", f"/api/v1/approvals/{request_id}")
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        _show(found)


@approvals.command("approve")
@api_option
@click.argument("request_id")
@click.option("--reason", default="", help="why (required by some rules)")
@click.option(
    "--window",
    default=None,
    help="let the identical statement run again for this long (15m, 1h); default once",
)
def approvals_approve(api: str | None, request_id: str, reason: str, window: str | None) -> None:
    """Approve a request (it runs once the quorum is reached)."""
    body = {"reason": reason, "window": _seconds(window, "--window")}
    done = _call(api, "POST", f"/api/v1/approvals/{request_id}/approve", json=body)
    approvals_so_far = sum(1 for v in done["votes"] if v["approve"])
    console.print(
        f"approved {done['id']}: {approvals_so_far} of {done['quorum']} approval(s); "
        f"it is now {done['status']}"
    )


@approvals.command("reject")
@api_option
@click.argument("request_id")
@click.option("--reason", default="", help="why (shown to the requester)")
def approvals_reject(api: str | None, request_id: str, reason: str) -> None:
    """Reject a request: the held statement fails with your name and reason."""
    done = _call(api, "POST", f"/api/v1/approvals/{request_id}/reject", json={"reason": reason})
    console.print(f"rejected {done['id']}")


@approvals.command("revoke")
@api_option
@click.argument("request_id")
def approvals_revoke(api: str | None, request_id: str) -> None:
    """End an approval or access grant early (its connections are ended)."""
    done = _call(api, "POST", f"/api/v1/approvals/{request_id}/revoke")
    console.print(f"revoked {done['id']}")


@approvals.command("review")
@api_option
@click.argument("request_id")
def approvals_review(api: str | None, request_id: str) -> None:
    """Mark a break-glass access as reviewed."""
    done = _call(api, "POST", f"/api/v1/approvals/{request_id}/review")
    console.print(f"reviewed {done['id']} (break-glass by {done['requester']})")


@click.group()
def access() -> None:
    """Just-in-time access: ask for a time-bound grant to a connection."""


@access.command("request")
@api_option
@json_option
@click.argument("connection")
@click.option("--role", required=True, help="a role the connection offers")
@click.option("--duration", default="1h", show_default=True, help="30m, 1h, 8h")
@click.option("--reason", default="", help="why you need it (approvers see it)")
@click.option("--break-glass", is_flag=True, help="emergency: granted at once, reviewed later")
def access_request(
    api: str | None,
    as_json: bool,
    connection: str,
    role: str,
    duration: str,
    reason: str,
    break_glass: bool,
) -> None:
    """Ask for access; connect once it is approved."""
    body = {
        "connection": connection,
        "role": role,
        "duration": _seconds(duration, "--duration"),
        "reason": reason,
        "break_glass": break_glass,
    }
    done = _call(api, "POST", "/api/v1/access/requests", json=body)
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    if done["status"] == "approved":
        console.print(
            f"[bold]{done['id']}[/bold]: break-glass access to {connection} granted until "
            f"{_when(done['approved_until'])}; it will be reviewed"
        )
    else:
        console.print(
            f"[bold]{done['id']}[/bold]: asked {done['quorum']} approver(s) from "
            f"{', '.join(done['approver_groups'])}; connect once it is approved "
            f"(dbward approvals show {done['id']})"
        )


@access.command("grants")
@api_option
@json_option
@click.option("--connection", default=None)
@click.option("--mine", is_flag=True, help="only your own")
def access_grants(api: str | None, as_json: bool, connection: str | None, mine: bool) -> None:
    """Access grants in force."""
    params: dict[str, Any] = {"mine": mine}
    if connection:
        params["connection"] = connection
    found = _call(api, "GET", "/api/v1/access/grants", params=params)["grants"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table("id", "identity", "connection", "role", "until", "break-glass")
    for g in found:
        table.add_row(
            g["id"],
            g["requester"],
            g["connection"],
            g["role"],
            _when(g["approved_until"]),
            "yes" if g["break_glass"] else "",
        )
    Console().print(table)
