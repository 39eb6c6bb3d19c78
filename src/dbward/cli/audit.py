"""``dbward audit``: read, search, question, verify and export the audit trail."""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from dbward import times
from dbward.audit.events import EventKind
from dbward.audit.store import AuditStore
from dbward.cli.common import _config, _fail, config_option, console
from dbward.config import Config
from dbward.errors import DbwardError
from dbward.stores import open_audit_store, store_name

# Piped output is not cut to 80 columns: tables stay readable in files and pagers.
out = Console() if sys.stdout.isatty() else Console(width=200)


def parse_when(text: str | None) -> float | None:
    """A time option (see :func:`dbward.times.parse_when`); a bad one is a usage error."""
    try:
        return times.parse_when(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _open_store(config: Config) -> AuditStore:
    """The configured store, which must already hold a trail (SQLite: the file exists)."""
    try:
        return open_audit_store(config, must_exist=True)
    except DbwardError as exc:
        _fail(exc)
        raise


time_options: list[Callable[[Any], Any]] = [
    click.option("--since", help="from this time: 2026-11-01, 2026-11-01T09:30, 24h, 7d"),
    click.option("--until", help="up to (not including) this time"),
]


def _with(options: Iterable[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(function: Any) -> Any:
        for option in reversed(list(options)):
            function = option(function)
        return function

    return apply


@click.group("audit")
def audit() -> None:
    """Read, search, question, verify and export the audit trail."""


@audit.command("tail")
@config_option
@click.option("-n", "--lines", "limit", default=20, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="keep printing new records")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def audit_tail(config_path: Path | None, limit: int, follow: bool, as_json: bool) -> None:
    """Print the latest audit records."""
    from dbward.audit.render import render_event, render_json
    from dbward.audit.trail import AuditTrail

    config = _config(config_path)
    trail = AuditTrail(_open_store(config), config.audit_journal_dir)
    last = 0
    shown: set[tuple[str, int]] = set()
    try:
        while True:
            for stored in trail.read(limit if not last else 1000, after_id=last):
                if (stored.chain, stored.seq) in shown:
                    continue
                shown.add((stored.chain, stored.seq))
                click.echo(render_json(stored) if as_json else render_event(stored))
                last = max(last, stored.id)
            if not follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        trail.close()


@audit.command("pubkey")
@config_option
def audit_pubkey(config_path: Path | None) -> None:
    """Print the public key that checks the trail's signatures (PEM)."""
    from dbward.audit.signing import SIGNING_KEY, Signer, public_pem
    from dbward.keyring import load_keyring

    config = _config(config_path)
    if not (config.state_dir / "keyring.json").exists():
        _fail(
            DbwardError(
                f"no keyring in {config.state_dir}: dbward has not run with this state "
                "directory, so there is no audit key yet"
            )
        )
    try:
        signer = Signer(load_keyring(config.state_dir).key(SIGNING_KEY))
    except DbwardError as exc:
        _fail(exc)
        return
    click.echo(public_pem(signer.public), nl=False)
    console.print(f"key id {signer.key_id}", style="dim", highlight=False, soft_wrap=True)


def _public_keys(config: Config, paths: tuple[Path, ...]) -> list[Any]:
    """The keys given (every instance's, for a shared store), else this keyring's own."""
    from dbward.audit.signing import SIGNING_KEY, Signer, load_public_key
    from dbward.keyring import load_keyring

    if paths:
        return [load_public_key(path.read_bytes()) for path in paths]
    return [Signer(load_keyring(config.state_dir).key(SIGNING_KEY)).public]


@audit.command("verify")
@config_option
@click.option(
    "--file",
    "bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="an export bundle (dbward audit export --format bundle) instead of the live store",
)
@click.option(
    "--public-key",
    "key_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a PEM public key to trust (dbward audit pubkey), repeated for each instance "
    "sharing the store; needed with --file; default: this keyring's key",
)
@click.option("--json", "as_json", is_flag=True)
def audit_verify(
    config_path: Path | None, bundle: Path | None, key_paths: tuple[Path, ...], as_json: bool
) -> None:
    """Re-hash every chain and check every signature; exit status 1 on the first bad record."""
    from dbward.audit.export import BundleError, verify_bundle
    from dbward.audit.trail import AuditTrail
    from dbward.audit.verify import verify_store

    try:
        if bundle is not None:
            if not key_paths:
                raise DbwardError(
                    "--file needs --public-key: the PEM key you trust (dbward audit pubkey)"
                )
            keys = _public_keys(_config(config_path), key_paths)
            result = verify_bundle(bundle.read_bytes(), keys)
            source = str(bundle)
        else:
            config = _config(config_path)
            public = _public_keys(config, key_paths)
            trail = AuditTrail(_open_store(config), config.audit_journal_dir)
            try:
                result = verify_store(trail.store, public)
                pending = len(trail.pending())
            finally:
                trail.close()
            source = store_name(config)
            if pending:
                source += f" ({pending} newer record(s) still only in the journal, not checked)"
    except (DbwardError, BundleError) as exc:
        _fail(exc if isinstance(exc, DbwardError) else DbwardError(str(exc)))
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "source": source,
                    "records": result.records,
                    "first_problem": asdict(result.first_problem) if result.first_problem else None,
                    "chains": [{**asdict(c), "unsigned": c.unsigned} for c in result.chains],
                },
                indent=2,
            )
        )
    else:
        table = Table("chain", "records", "seq", "signed up to", "checkpoints", "status")
        for c in result.chains:
            status = "[green]ok[/green]" if c.problem is None else f"[red]{c.problem.kind}[/red]"
            if c.problem is None and c.unsigned:
                status += f" ({c.unsigned} after the last checkpoint, not yet signed)"
            seqs = f"{c.first_seq}..{c.last_seq}" if c.records else "-"
            table.add_row(
                c.chain, str(c.records), seqs, str(c.signed_seq), str(c.checkpoints), status
            )
        out.print(table)
        problem = result.first_problem
        if problem is None:
            out.print(f"[green]verified[/green]: {result.records} record(s) in {source}")
        else:
            out.print(f"[red]TAMPERED[/red]: {problem}", highlight=False)
    sys.exit(0 if result.ok else 1)


search_options: list[Callable[[Any], Any]] = [
    click.option("--identity"),
    click.option("--group", help="sessions of identities in this group"),
    click.option("--kind", "identity_kind", type=click.Choice(["human", "service", "agent"])),
    click.option("--connection"),
    click.option("--environment"),
    click.option("--table", help="statements that read or wrote this table"),
    click.option("--decision", type=click.Choice(["allow", "deny", "review"])),
    click.option("--event", "event_kind", type=click.Choice([k.value for k in EventKind])),
    click.option("--session"),
    click.option("--agent", help="agent name, model, model version or run id"),
    click.option("--text", help="in the statement or its error"),
    *time_options,
]


def _search(**options: Any) -> Any:
    from dbward.audit.search import Search

    return Search(
        identity=options["identity"],
        group=options["group"],
        identity_kind=options["identity_kind"],
        connection=options["connection"],
        environment=options["environment"],
        table=options["table"],
        decision=options["decision"],
        kind=options["event_kind"],
        session=options["session"],
        agent=options["agent"],
        text=options["text"],
        since=parse_when(options["since"]),
        until=parse_when(options["until"]),
        limit=options.get("limit", 100),
    )


@audit.command("search")
@config_option
@_with(search_options)
@click.option("-n", "--limit", default=100, show_default=True, help="the newest N matches")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def audit_search(config_path: Path | None, as_json: bool, **options: Any) -> None:
    """Find records by who, where, what and when (newest matches, oldest first)."""
    from dbward.audit.render import render_event, render_json
    from dbward.audit.search import search

    config = _config(config_path)
    store = _open_store(config)
    try:
        found = search(store, _search(**options))
    finally:
        store.close()
    for stored in found:
        click.echo(render_json(stored) if as_json else render_event(stored))
    if not as_json:
        out.print(f"{len(found)} record(s)", style="dim")


@audit.command("export")
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "ocsf", "bundle"]),
    default="jsonl",
    show_default=True,
    help="bundle: whole chain segments plus signatures, for dbward audit verify --file",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="default: stdout"
)
@_with(search_options)
@click.option("-n", "--limit", default=1_000_000, show_default=True)
def audit_export(config_path: Path | None, fmt: str, output: Path | None, **options: Any) -> None:
    """Export records as JSON lines, CSV or OCSF (with the search filters), or a signed bundle
    of everything in a time range."""
    from dbward.audit.admin import record_admin
    from dbward.audit.export import bundle_lines, write_csv, write_jsonl, write_ocsf
    from dbward.audit.search import search
    from dbward.audit.signing import SIGNING_KEY, Signer
    from dbward.keyring import load_keyring

    config = _config(config_path)
    query = _search(**options)
    filters = {k: v for k, v in asdict(query).items() if v is not None and k != "limit"}
    if fmt == "bundle" and set(filters) - {"since", "until"}:
        raise click.UsageError(
            "a bundle holds whole chain segments: only --since and --until apply"
        )
    store = _open_store(config)
    # Written beside the target and renamed at the end: a failed export leaves no half file
    # (and an earlier export of that name stays as it was).
    partial = output.with_name(output.name + ".partial") if output else None
    handle: IO[str] = partial.open("w", encoding="utf-8", newline="") if partial else sys.stdout
    try:
        if fmt == "bundle":
            signer = Signer(load_keyring(config.state_dir).key(SIGNING_KEY))
            count = 0
            for line in bundle_lines(store, signer, since=query.since, until=query.until):
                handle.write(line)
                count += 1
            count = max(count - 2, 0)
        else:
            records = [r for r in _records(store, search(store, query))]
            writer = {"jsonl": write_jsonl, "csv": write_csv, "ocsf": write_ocsf}[fmt]
            count = writer(records, handle)
    except BaseException:
        if partial is not None:
            handle.close()
            partial.unlink(missing_ok=True)
        raise
    finally:
        store.close()
    if output is not None and partial is not None:
        handle.close()
        partial.replace(output)
    store = _open_store(config)
    try:
        record_admin(
            store,
            config.state_dir,
            config.audit.instance,
            EventKind.AUDIT_EXPORTED,
            {
                "format": fmt,
                "records": count,
                "filters": filters,
                "to": output.name if output else "-",
            },
        )
    finally:
        store.close()
    out.print(f"exported {count} line(s) as {fmt}", style="dim")


def _records(store: Any, found: list[Any]) -> Iterable[Any]:
    from dbward.audit.chain import ChainRecord

    for stored in found:
        rows = store.query(
            "SELECT chain, seq, hash, line, id FROM records WHERE chain = ? AND seq = ?",
            (stored.chain, stored.seq),
        )
        yield ChainRecord(*rows[0])


def _touched_table(rows: list[Any], first: str, with_columns: bool) -> Table:
    headers = [first, "kind", "access", "statements", "rows", "masked", "first", "last"]
    table = Table(*(headers + (["columns"] if with_columns else [])))
    for t in rows:
        cells = [
            t.key, t.identity_kind or "-", t.access, str(t.statements), str(t.rows),
            str(t.masked), _iso(t.first), _iso(t.last),
        ]  # fmt: skip
        if with_columns:
            cells.append(", ".join(t.columns))
        table.add_row(*cells)
    return table


@audit.command("who-touched")
@config_option
@click.argument("name", metavar="TABLE[.COLUMN]")
@_with(time_options)
@click.option("--json", "as_json", is_flag=True)
def audit_who_touched(
    config_path: Path | None, name: str, since: str | None, until: str | None, as_json: bool
) -> None:
    """Who read or wrote a table or a column, how often, and when."""
    from dbward.audit.search import split_table_column, who_touched

    config = _config(config_path)
    store = _open_store(config)
    try:
        table, column = split_table_column(store, name)
        rows = who_touched(store, table, column, since=parse_when(since), until=parse_when(until))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    what = f"{table}.{column}" if column else table
    out.print(_touched_table(rows, "identity", False))
    out.print(f"{len(rows)} identity/access pair(s) touched {what}", style="dim")


@audit.command("touched-by")
@config_option
@click.argument("identity")
@_with(time_options)
@click.option("--json", "as_json", is_flag=True)
def audit_touched_by(
    config_path: Path | None, identity: str, since: str | None, until: str | None, as_json: bool
) -> None:
    """Which tables and columns an identity read or wrote."""
    from dbward.audit.search import touched_by

    config = _config(config_path)
    store = _open_store(config)
    try:
        rows = touched_by(store, identity, since=parse_when(since), until=parse_when(until))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    out.print(_touched_table(rows, "table", True))
    out.print(f"{len(rows)} table/access pair(s) touched by {identity}", style="dim")
