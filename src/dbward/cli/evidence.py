"""``dbward evidence``: a compliance report (HTML and PDF) drawn from the audit trail."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from dbward.audit.evidence.controls import FRAMEWORKS
from dbward.cli.audit import _open_store, parse_when
from dbward.cli.common import _config, _fail, config_option, console
from dbward.errors import DbwardError


@click.command("evidence")
@config_option
@click.option("--framework", type=click.Choice(sorted(FRAMEWORKS)), required=True)
@click.option("--from", "since", required=True, help="2026-10-01, 2026-10-01T00:00, 30d")
@click.option("--to", "until", default="now", show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="directory for the .html and .pdf",
)
def evidence(
    config_path: Path | None, framework: str, since: str, until: str, output: Path
) -> None:
    """Write an evidence report that maps a framework's controls to what the trail shows."""
    from dbward.audit.evidence.collect import collect
    from dbward.audit.evidence.render import html, pdf
    from dbward.audit.evidence.report import build
    from dbward.audit.signing import SIGNING_KEY, Signer
    from dbward.keyring import load_keyring

    config = _config(config_path)
    start, end = parse_when(since), parse_when(until)
    if start is None or end is None:
        raise click.BadParameter("--from and --to need a time: 2026-10-01, 30d, now")
    if end <= start:
        _fail(DbwardError("--to must be after --from"))
    store = _open_store(config)  # first: a missing store is the error to report
    if not (config.state_dir / "keyring.json").exists():
        store.close()
        _fail(
            DbwardError(
                f"no keyring in {config.state_dir}: the trail's signatures cannot be checked "
                "(copy the keyring that came with the store)"
            )
        )
    signer = Signer(load_keyring(config.state_dir).key(SIGNING_KEY))
    try:
        report = build(collect(store, signer.public, signer.key_id, start, end), framework)
    finally:
        store.close()
    output.mkdir(parents=True, exist_ok=True)
    day = datetime.datetime.fromtimestamp
    stem = (
        f"dbward-evidence-{framework}-{day(start, datetime.UTC):%Y%m%d}-"
        f"{day(end, datetime.UTC):%Y%m%d}"
    )
    html_path, pdf_path = output / f"{stem}.html", output / f"{stem}.pdf"
    html_path.write_text(html(report), encoding="utf-8")
    pdf_path.write_bytes(pdf(report))
    verdict = "trail verified" if report.verified else "[red]trail verification FAILED[/red]"
    console.print(f"wrote {html_path} and {pdf_path} ({verdict})")
    click.echo(html_path)
    click.echo(pdf_path)
    if not report.verified:
        raise SystemExit(1)  # the report is written; automation still learns of the failure
