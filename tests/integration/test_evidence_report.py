"""``dbward evidence`` end to end: real clients write the trail, the real command writes the
HTML and PDF report for each framework, and the PDF is rendered page by page (pypdfium2).

One dbward (production guardrails, a deny rule for agents, masking on) serves a short
workload: a service token with groups (psycopg) reads, updates and tries a DELETE without
WHERE (refused by the guardrail); an agent token made with ``dbward token create`` (psql,
with agent attribution in application_name) reads a PII column (masked) and tries an
INSERT (refused by the agent rule); a wrong token and a token revoked with ``dbward token
revoke`` fail to sign in. The reports are written while dbward runs.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pypdfium2
import pytest
import yaml
from PIL import Image

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import psql, unique, wait_for
from tests.integration.policy_helpers import connect, upstream_exec

CONTROLS = {
    "soc2": ["CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC8.1"],
    "iso27001": ["A.5.15", "A.8.2", "A.8.5", "A.8.11", "A.8.15", "A.8.16"],
    "nist-800-53": ["AC-2", "AC-6", "AU-2", "AU-3", "AU-9", "AU-10"],
}
SECTIONS = [
    "Trail integrity (hash chain and signatures)",
    "Identities and their access",
    "Blocked and held operations",
    "Approvals",
    "Masking of personal data and secrets",
    "Failed sign-ins",
    "Policy changes and administrative actions",
    "Activity over time",
]
SERVICE, AGENT, REVOKED = "svc-ledger", "bot-analyst", "temp-bot"
UNBOUNDED = "guardrail:unbounded-write"
AGENT_RULE = "agents-read-only"
EMAIL = "grace.hopper@example.org"
NAME = "<b>Zoë 日本</b>"  # markup to escape; Japanese the PDF's Latin-1 fonts cannot show
POLICY = f"""\
version: 1
default: allow
rules:
  - name: {AGENT_RULE}
    match: {{identity_kind: agent, kind: [write, ddl, privilege, admin, unknown]}}
    action: deny
    message: AI agents have read-only access
"""


@dataclass
class Lab:
    server: Dbward
    table: str

    @property
    def delete(self) -> str:
        return f"DELETE FROM {self.table}"

    @property
    def insert(self) -> str:
        return f"INSERT INTO {self.table} VALUES (9, '{NAME}', 'z@example.org')"


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dbward <args> --config <config>``, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "dbward", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=config.parent,  # no ./dbward.yaml of anyone else's
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def cli_ok(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(config, *args)
    assert result.returncode == 0, describe(result)
    return result


def stored(server: Dbward) -> int:
    with closing(sqlite3.connect(server.state_dir / "audit.db")) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


@pytest.fixture(scope="module")
def lab(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = start_dbward(
        tmp_path_factory.mktemp("evidence"), upstream_db, environment="production", policy=POLICY
    )
    table = unique("people")
    upstream_exec(
        server,
        f"CREATE TABLE {table} (id int PRIMARY KEY, full_name text, email text); "
        f"INSERT INTO {table} VALUES (1, 'Grace Hopper', '{EMAIL}'), "
        "(2, 'Alan Turing', 'alan.turing@example.net')",
    )
    lab = Lab(server, table)
    server.token(SERVICE, groups=("finance", "eng"))
    config = server.config_path

    created = cli_ok(config, "token", "create", "--name", AGENT, "--kind", "agent")
    server.tokens[AGENT] = created.stdout.strip().splitlines()[-1]
    revoked = cli_ok(config, "token", "create", "--name", REVOKED, "--kind", "agent")
    revoked_secret = revoked.stdout.strip().splitlines()[-1]
    cli_ok(config, "token", "revoke", REVOKED)

    with connect(server, SERVICE, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        conn.execute(f"UPDATE {table} SET full_name = 'Grace B. Hopper' WHERE id = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=UNBOUNDED):
            conn.execute(lab.delete)

    agent_env = server.env(AGENT) | {"PGAPPNAME": "agent=analyst,model=gpt-4o"}
    read = psql(server, "-At", "-c", f"SELECT full_name, email FROM {table} ORDER BY id",
                env=agent_env)  # fmt: skip
    assert EMAIL not in read.stdout, read.stdout
    assert "****@example.org" in read.stdout, read.stdout
    refused = psql(server, "-c", lab.insert, env=agent_env, check=False)
    assert refused.returncode != 0
    assert AGENT_RULE in refused.stderr, refused.stderr

    for user, secret in ((SERVICE, "dbw_" + "x" * 43), (REVOKED, revoked_secret)):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn(user, password=secret), connect_timeout=10).close()

    wait_for(
        lambda: stored(server) >= len(server.audit()), what="every record in the store", timeout=10
    )
    yield lab
    stop_dbward(server)


def evidence(
    config: Path, framework: str, output: Path, *period: str
) -> subprocess.CompletedProcess[str]:
    args = period or ("--from", "1h")
    return run_cli(config, "evidence", "--framework", framework, *args, "-o", str(output))


def written(result: subprocess.CompletedProcess[str], output: Path) -> tuple[str, Path]:
    """The HTML's text and the PDF's path the command printed (and nothing else there)."""
    html_path, pdf_path = (Path(line) for line in result.stdout.split())
    assert html_path.parent == pdf_path.parent == output
    assert sorted(output.iterdir()) == sorted([html_path, pdf_path])
    assert re.fullmatch(r"dbward-evidence-[a-z0-9-]+-\d{8}-\d{8}\.html", html_path.name)
    assert pdf_path == html_path.with_suffix(".pdf")
    return html_path.read_text(encoding="utf-8"), pdf_path


def rendered_pages(pdf_path: Path, into: Path) -> list[tuple[Path, str]]:
    """Each page rendered to a PNG under ``into`` (150 dpi), with the page's text."""
    pages = []
    document = pypdfium2.PdfDocument(pdf_path)
    try:
        for number, page in enumerate(document, 1):
            png = into / f"{pdf_path.stem}-page{number}.png"
            page.render(scale=150 / 72).to_pil().save(png)
            textpage = page.get_textpage()
            pages.append((png, " ".join(textpage.get_text_range().split())))
            textpage.close()
            page.close()
    finally:
        document.close()
    return pages


def inked(png: Path) -> int:
    """Pixels that are not near white, above the footer."""
    with Image.open(png) as image:
        grey = image.convert("L")
        body = grey.crop((0, 0, grey.width, int(grey.height * 0.9)))
        return sum(body.histogram()[:200])


@pytest.mark.parametrize("framework", sorted(CONTROLS))
def test_the_report_of_each_framework(lab: Lab, framework: str, tmp_path: Path) -> None:
    output = tmp_path / "report"
    result = evidence(lab.server.config_path, framework, output)
    assert result.returncode == 0, describe(result)
    assert "trail verified" in result.stderr, describe(result)
    html, pdf_path = written(result, output)
    assert framework in pdf_path.name

    # the HTML: every section, every control, the refusals with their rules, who did what
    assert '<span class="verdict ok">Trail verified</span>' in html
    for title in SECTIONS:
        assert f">{title}</h2>" in html, title
    for control in CONTROLS[framework]:
        assert f"<td>{control}</td>" in html, control
    assert "evidence in this period" in html
    for needle in (
        f"<td>{lab.delete}</td>",
        f"<td>{UNBOUNDED}</td>",
        f"<td>{AGENT_RULE}</td>",
        # identity, kind, groups, verified by, connections, sessions, statements, writes,
        # refused: one psycopg session, two psql ones
        f"<td>{SERVICE}</td><td>service</td><td>eng, finance</td><td>token</td><td>app</td>"
        "<td>1</td><td>3</td><td>1</td><td>1</td>",
        f"<td>{AGENT}</td><td>agent</td><td>-</td><td>token</td><td>app</td>"
        "<td>2</td><td>2</td><td>0</td><td>1</td>",
        "<dt>Refused statements</dt><dd>2 by a rule or guardrail, 0 needing approval (review)</dd>",
        f"<td>public.{lab.table}.email</td>",
        "<td>unknown token</td>",
        "<td>token.created</td><td>os:",
        "<td>token.revoked</td><td>os:",
        f"<td>{REVOKED}</td>",
        "<td>analyst</td>",  # the agent named in application_name
        "&lt;b&gt;Zoë 日本&lt;/b&gt;",
    ):
        assert needle in html, needle
    assert NAME not in html
    assert EMAIL not in html
    assert html.count("<svg ") == 1

    # the PDF: every page rendered, each with content, the same facts in its text
    pages = rendered_pages(pdf_path, tmp_path)
    assert len(pages) >= 3
    for number, (png, text) in enumerate(pages, 1):
        assert png.stat().st_size > 0
        assert inked(png) > 1000, (png, inked(png))  # more than an empty page
        assert text.endswith(f"page {number}"), text[-200:]
    text = "\n".join(page_text for _, page_text in pages)
    assert "Trail verified" in text
    for needle in [*CONTROLS[framework], *SECTIONS, lab.delete, UNBOUNDED, AGENT_RULE,
                   SERVICE, AGENT, REVOKED, f"public.{lab.table}.email", "unknown token",
                   "<b>Zoë ??</b>"]:  # fmt: skip
        assert needle in text, needle
    assert "日本" not in text
    assert EMAIL not in text


def test_to_before_from_fails_clearly(lab: Lab, tmp_path: Path) -> None:
    output = tmp_path / "report"
    result = evidence(lab.server.config_path, "soc2", output, "--from", "1h", "--to", "2h")
    assert result.returncode == 2, describe(result)
    assert "--to must be after --from" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()

    result = evidence(lab.server.config_path, "soc2", output, "--from", "last tuesday")
    assert result.returncode == 2, describe(result)
    assert "'last tuesday' is not a time" in result.stderr
    assert not output.exists()


@pytest.mark.parametrize("period", [("--from", ""), ("--from", "1h", "--to", " ")])
def test_a_blank_time_is_a_usage_error(lab: Lab, tmp_path: Path, period: tuple[str, ...]) -> None:
    result = evidence(lab.server.config_path, "soc2", tmp_path / "report", *period)
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr, describe(result)


def copy_state(server: Dbward, into: Path) -> Path:
    """The trail and the keyring copied (consistently, while dbward writes) into a state
    directory of their own; the config that reads it."""
    state = into / "state"
    state.mkdir()
    shutil.copy(server.state_dir / "keyring.json", state / "keyring.json")
    with (
        closing(sqlite3.connect(server.state_dir / "audit.db")) as source,
        closing(sqlite3.connect(state / "audit.db")) as copy,
    ):
        source.backup(copy)
    config = into / "dbward.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "connections": {}}))
    return config


def test_a_tampered_store_makes_the_report_say_verification_failed(
    lab: Lab, tmp_path: Path
) -> None:
    config = copy_state(lab.server, tmp_path)
    with closing(sqlite3.connect(tmp_path / "state" / "audit.db")) as db:
        changed = db.execute(
            "UPDATE records SET line = replace(line, ?, ?) WHERE kind = 'statement' "
            "AND json_extract(data, '$.statement') = ?",
            (lab.delete, f"{lab.delete} WHERE false", lab.delete),
        ).rowcount
        db.commit()
    assert changed == 1

    output = tmp_path / "report"
    result = evidence(config, "nist-800-53", output)
    # the report is written either way; it says the trail cannot be trusted
    assert result.returncode in (0, 1), describe(result)
    assert "trail verification FAILED" in result.stderr, describe(result)
    html, pdf_path = written(result, output)
    assert '<span class="verdict bad">Trail verification FAILED</span>' in html
    assert "Trail verified" not in html
    assert re.search(r"FAILED: record [\w.-]+#\d+ \(row \d+\): modified:", html), html[:3000]
    for control in ("AU-9", "AU-10"):  # the controls whose evidence is the trail itself
        assert re.search(rf"<td>{control}</td>(<td>[^<]*</td>){{3}}<td>trail verification FAILED",
                         html), control  # fmt: skip
    text = " ".join(page for _, page in rendered_pages(pdf_path, tmp_path))
    assert "Trail verification FAILED" in text
    assert "Trail verified" not in text


def test_a_report_on_a_missing_store_fails_without_writing_anything(tmp_path: Path) -> None:
    state = tmp_path / "nothing-here"
    config = tmp_path / "dbward.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "connections": {}}))
    result = evidence(config, "soc2", tmp_path / "report")
    assert result.returncode == 2, describe(result)
    assert "no audit store at" in result.stderr
    assert not (tmp_path / "report").exists()
    assert not state.exists()
