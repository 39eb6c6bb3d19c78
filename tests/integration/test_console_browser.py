"""The web console in a real browser: Debian's Chromium driven by Playwright, signing in at
a real OpenID Connect provider (tests/oidc_provider.py), in front of a real dbward and
PostgreSQL, with psql as the person whose statements the console shows.

- Sign-in is the authorization code flow with PKCE and lands on the page asked for; the
  session cookie is HttpOnly, Secure and SameSite=Strict; pages carry a CSP; a visit
  without a session is sent to sign in; signing out ends the session server-side.
- Live activity: a statement run in psql appears on the open page (server-sent events).
- Approvals: a DELETE held in psql is approved (psql gets its row) or rejected with a
  reason (psql's error names the approver and the reason) in one click each.
- Audit search, its CSV and JSON-lines exports, a session's timeline, chain verification.
- A vote without the session's CSRF token (or with a wrong one) is 403 and not counted.
- Someone without the auditor role may vote but not read the trail.

Module-scoped: one provider, one dbward, one Chromium. With ``DBWARD_SCREENSHOTS`` set to
a folder (docs/console), each page is saved there as a full-page PNG for the docs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    sync_playwright,
)

from tests.conftest import Dbward, UpstreamDb, free_port, start_dbward, stop_dbward, wait_for_port
from tests.integration.approvals_helpers import REVIEW_POLICY, api, people
from tests.integration.helpers import log_tail, psql, wait_for
from tests.oidc_provider import OidcProvider

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
AUDITOR = "bob@example.com"  # dba (approves deletes) and auditors (reads the trail)
APPROVER_ONLY = "dana@example.com"  # dba only
ACCOUNTS = {
    AUDITOR: {"groups": ["dba", "auditors"], "name": "Bob Builder"},
    APPROVER_ONLY: {"groups": ["dba"], "name": "Dana Only"},
}
SCREENSHOTS = os.environ.get("DBWARD_SCREENSHOTS")
PAGE_TIMEOUT_MS = 15_000


@dataclass
class Console:
    server: Dbward
    idp: OidcProvider
    public: str  # the API's (and console's) base URL
    tokens: dict[str, str]  # dbward service tokens: alice (dev), bob and carol (dba)

    def url(self, path: str) -> str:
        return self.public + path

    def sql(self, *statements: str) -> str:
        """Run ``statements`` in psql as alice, each its own query; the output."""
        return psql(self.server, *(f"-c{s}" for s in statements), user="alice").stdout

    def held(self, *statements: str) -> subprocess.Popen[str]:
        """psql (alice) running ``statements`` in the background (one waits for approval)."""
        return subprocess.Popen(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", *(f"-c{s}" for s in statements)],
            env=self.server.env("alice"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def request_for(self, needle: str) -> dict[str, Any]:
        """The pending approval request whose statement contains ``needle``."""

        def probe() -> dict[str, Any] | None:
            status, body = api(self.public, self.tokens["bob"], "GET", "/api/v1/approvals")
            assert status == 200, body
            found = [
                r for r in body["requests"] if needle in r["statement"] and r["status"] == "pending"
            ]
            return found[0] if found else None

        found: dict[str, Any] = wait_for(probe, timeout=15, what=f"a request for {needle!r}")
        return found

    def request(self, request_id: str) -> dict[str, Any]:
        status, body = api(
            self.public, self.tokens["bob"], "GET", f"/api/v1/approvals/{request_id}"
        )
        assert status == 200, body
        return dict(body)


def table_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def finish(proc: subprocess.Popen[str], server: Dbward) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"psql still waiting:\n{out}\n{err}\n{log_tail(server)}") from None
    return proc.returncode, out, err


def screenshot(page: Page, name: str) -> None:
    """A full-page PNG for the docs, only when DBWARD_SCREENSHOTS names the folder."""
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000, shot


# fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    api_port = free_port()
    public = f"http://127.0.0.1:{api_port}"
    with OidcProvider(ACCOUNTS, console_redirect_uris=[public + "/console/callback"]) as idp:
        extra = {
            "api": {
                "enabled": True,
                "port": api_port,
                "console": {"client_id": idp.console_client_id, "public_url": public},
            },
            "identity": {
                "oidc": [
                    {
                        "issuer": idp.issuer,
                        "audience": [idp.client_id, idp.console_client_id],
                        "username_claim": "email",
                        "groups_claim": "groups",
                    }
                ]
            },
            "approvals": {"wait": 30, "poll_interval": 0.1},
        }
        server = start_dbward(
            tmp_path_factory.mktemp("console"),
            upstream_db,
            extra_config=extra,
            policy=REVIEW_POLICY,
        )
        try:
            wait_for_port(api_port, proc=server.proc)
            yield Console(server, idp, public, people(server))
        finally:
            stop_dbward(server)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: these tests drive Debian's (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


def sign_in(context: BrowserContext, console: Console, account: str, path: str) -> Page:
    """Open ``path`` in a browser without a session: sign in at the provider, consent, and
    wait until the console shows ``path``."""
    page = context.new_page()
    page.goto(console.url(path))
    assert page.url.startswith(console.idp.issuer + "/"), page.url
    page.fill("#login input[name=login]", account)
    page.click("#login button[type=submit]")
    page.click("#confirm button[type=submit]")
    page.wait_for_url(console.url(path))
    return page


@pytest.fixture(scope="module")
def auditor(browser: Browser, console: Console) -> Iterator[Page]:
    """Bob's page (auditor and dba), signed in once for the module."""
    context = new_context(browser)
    page = sign_in(context, console, AUDITOR, "/console/")
    yield page
    context.close()


def page_error(message: ConsoleMessage) -> bool:
    """An error in the browser's console other than the favicon nobody serves."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


def session_cookie(context: BrowserContext) -> dict[str, Any]:
    found = [c for c in context.cookies() if c["name"] == "dbward_session"]
    assert len(found) == 1, context.cookies()
    return dict(found[0])


# signing in and out ----------------------------------------------------------------------


def test_sign_in_cookie_csp_and_sign_out(browser: Browser, console: Console) -> None:
    wanted = "/console/audit?identity=alice"
    context = new_context(browser)
    try:
        # Without a session: sent to sign in, with the page asked for kept.
        answer = context.request.get(console.url(wanted), max_redirects=0)
        assert answer.status == 303
        location = answer.headers["location"]
        assert location.startswith("/console/login?")
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["next"] == [wanted]

        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if page_error(m) else None)
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.goto(console.url(wanted))
        assert page.url.startswith(console.idp.issuer + "/interaction/"), page.url
        page.fill("#login input[name=login]", AUDITOR)
        page.click("#login button[type=submit]")
        with page.expect_response(console.url(wanted)) as landed:
            page.click("#confirm button[type=submit]")
        page.wait_for_url(console.url(wanted))
        response = landed.value
        assert response.status == 200
        assert page.locator("header .who span").inner_text() == AUDITOR
        assert page.locator("input[name=identity]").input_value() == "alice"

        csp = response.all_headers()["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert directives["script-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert failed == []
        assert errors == []  # nothing on the page broke the policy

        cookie = session_cookie(context)
        assert cookie["httpOnly"] is True
        assert cookie["secure"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/"
        assert page.evaluate("document.cookie") == ""  # invisible to scripts

        # Sign out: the header's form (POST with the CSRF token) ends the session.
        with page.expect_response(console.url("/console/logout")) as signed_out:
            page.click("header form.who button[type=submit]")
        assert signed_out.value.status == 200  # a page of dbward's own: "Signed out"
        page.wait_for_selector("text=Signed out")
        wait_for(
            lambda: all(c["name"] != "dbward_session" for c in context.cookies()),
            what="the session cookie to be deleted",
        )
    finally:
        context.close()

    # The old cookie is worth nothing now, even in a browser that still sends it.
    stale = new_context(browser)
    try:
        stale.add_cookies(
            [{"name": "dbward_session", "value": cookie["value"], "url": console.public}]
        )
        answer = stale.request.get(console.url("/console/"), max_redirects=0)
        assert answer.status == 303
        assert answer.headers["location"].startswith("/console/login?")
        page = stale.new_page()
        page.goto(console.url("/console/"))
        assert page.url.startswith(console.idp.issuer + "/interaction/"), page.url
        assert page.locator("#login input[name=login]").is_visible()
        api_answer = stale.request.get(console.url("/api/v1/audit/search"))
        assert api_answer.status == 401
    finally:
        stale.close()


def test_sign_out_leaves_the_page(browser: Browser, console: Console) -> None:
    context = new_context(browser)
    try:
        page = sign_in(context, console, AUDITOR, "/console/approvals")
        violations: list[str] = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        with page.expect_response(console.url("/console/logout")):
            page.click("header form.who button[type=submit]")
        page.wait_for_url(console.url("/console/logout"), timeout=3000)
        assert page.locator("h1").inner_text() == "Signed out"
        assert violations == []
    finally:
        context.close()


# live activity ---------------------------------------------------------------------------


def test_statement_appears_live(auditor: Page, console: Console) -> None:
    page = auditor
    page.goto(console.url("/console/"))
    page.evaluate("window.notReloaded = true")
    marker = table_name("live")
    console.sql(f"SELECT '{marker}' AS marker")
    row = page.locator("#activity tbody tr.fresh", has_text=marker)
    row.first.wait_for()
    assert page.evaluate("window.notReloaded") is True  # added by the page's script
    cells = row.first.locator("td").all_inner_texts()
    assert cells[1] == "statement"
    assert cells[2] == "alice"
    assert cells[5] == "allow"
    assert marker in cells[6]
    # Newest on top: nothing older than the statement is above it.
    top_ids = [
        int(i)
        for i in page.locator("#activity tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
    ]
    assert top_ids == sorted(top_ids, reverse=True)
    screenshot(page, "activity")


# approvals -------------------------------------------------------------------------------


def open_request(page: Page, console: Console, needle: str) -> Locator:
    """The approvals page, reloaded until it lists the request for ``needle``."""

    def probe() -> bool:
        page.goto(console.url("/console/approvals"))
        return page.locator("section.request", has_text=needle).count() == 1

    wait_for(probe, timeout=15, what=f"the approvals page to list {needle!r}")
    return page.locator("section.request", has_text=needle)


def test_approve_held_statement_in_one_click(auditor: Page, console: Console) -> None:
    page = auditor
    table = table_name("approve")
    console.sql(f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (7), (8)")
    statement = f"DELETE FROM {table} WHERE id = 7 RETURNING id"
    proc = console.held(statement)
    try:
        section = open_request(page, console, table)
        assert section.locator("pre.sql").inner_text() == statement
        assert "alice" in section.inner_text()
        request_id = section.get_attribute("id")
        screenshot(page, "approvals")
        section.locator("button.approve").click()
        notice = page.locator(".notice").inner_text()
    finally:
        code, out, err = finish(proc, console.server)
    assert code == 0, err
    assert "DELETE 1" in out
    assert out.split()[:3] == ["id", "----", "7"]
    assert page.url.startswith(console.url("/console/approvals"))
    assert notice == f"Approved {request_id}: it is now approved"
    assert console.sql(f"SELECT count(*) FROM {table}").split()[2] == "1"


def test_reject_with_reason(auditor: Page, console: Console) -> None:
    page = auditor
    table = table_name("reject")
    console.sql(f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)")
    proc = console.held(f"DELETE FROM {table}")
    try:
        section = open_request(page, console, table)
        request_id = section.get_attribute("id")
        section.locator("input[name=reason]").fill("not during the freeze")
        section.locator("button.reject").click()
        notice = page.locator(".notice").inner_text()
    finally:
        code, out, err = finish(proc, console.server)
    assert notice == f"Rejected {request_id}: it is now rejected"
    assert code != 0, out
    assert (
        f"approval request {request_id} was rejected by {AUDITOR}: not during the freeze" in err
    ), err
    assert console.sql(f"SELECT count(*) FROM {table}").split()[2] == "1"
    assert [
        (v["approver"], v["approve"], v["reason"]) for v in console.request(request_id)["votes"]
    ] == [(AUDITOR, False, "not during the freeze")]


# audit search, exports, timelines, verification --------------------------------------------


def test_search_and_export(auditor: Page, console: Console) -> None:
    page = auditor
    marker = table_name("search")
    console.sql(f"SELECT '{marker}' AS marker")
    page.goto(console.url("/console/audit"))
    page.fill("form.filters input[name=identity]", "alice")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/console/audit?identity=alice*")

    def stored() -> bool:  # the record reaches the store a moment after psql has its answer
        if marker in page.locator("#results tbody").inner_text():
            return True
        page.reload()
        return False

    wait_for(stored, timeout=15, what="the statement in the results")
    rows = page.locator("#results tbody tr")
    assert rows.count() > 0
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"alice"}
    assert marker in page.locator("#results tbody").inner_text()
    screenshot(page, "audit")

    with page.expect_download() as csv_download:
        page.click("p.exports a:text-is('CSV')")
    download = csv_download.value
    assert download.suggested_filename == "dbward-audit.csv"
    exported = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert {r["identity"] for r in exported} == {"alice"}
    assert any(marker in r["statement"] for r in exported)

    with page.expect_download() as jsonl_download:
        page.click("p.exports a:text-is('JSON lines')")
    lines = Path(jsonl_download.value.path()).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["identity"] for r in records} == {"alice"}
    assert any(marker in (r["data"].get("statement") or "") for r in records)


def shown_after_reloads(page: Page, url: str, rows: int) -> None:
    """Open ``url`` until its results hold ``rows`` rows: a record reaches the store (which
    the page reads) a moment after the client has its result."""

    def probe() -> bool:
        page.goto(url)
        return page.locator("#results tbody tr").count() >= rows

    wait_for(probe, timeout=15, what=f"{rows} result row(s) at {url}")


def test_export_keeps_the_table_filter(auditor: Page, console: Console) -> None:
    page = auditor
    table = table_name("exported")
    console.sql(f"CREATE TABLE {table} (id int)", f"SELECT * FROM {table}", "SELECT 1")
    shown_after_reloads(
        page, console.url("/console/audit?" + urllib.parse.urlencode({"table": table})), 2
    )
    shown = page.locator("#results tbody td.sql").all_inner_texts()
    assert shown
    assert all(table in text for text in shown), shown
    with page.expect_download() as csv_download:
        page.click("p.exports a:text-is('CSV')")
    exported = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text())))
    assert sorted(r["statement"] for r in exported) == sorted(shown)


def test_bundle_link_on_a_search_by_identity(auditor: Page, console: Console) -> None:
    page = auditor
    page.goto(console.url("/console/audit?identity=alice"))
    link = page.locator("p.exports a:text-is('signed bundle')").get_attribute("href")
    assert link
    answer = page.context.request.get(console.url(link))
    assert answer.status == 200, (answer.status, answer.text())


def test_session_timeline(auditor: Page, console: Console) -> None:
    page = auditor
    table = table_name("timeline")
    proc = console.held(
        f"CREATE TABLE {table} (id int)",
        f"INSERT INTO {table} VALUES (1)",
        f"SELECT * FROM {table}",
        f"DELETE FROM {table}",
    )
    request_id = console.request_for(table)["id"]
    status, body = api(
        console.public, console.tokens["bob"], "POST", f"/api/v1/approvals/{request_id}/reject", {}
    )
    assert status == 200, body
    code, _, err = finish(proc, console.server)
    assert code != 0
    assert "was rejected by bob" in err
    page.goto(console.url("/console/audit?" + urllib.parse.urlencode({"text": table})))
    row = page.locator("#results tbody tr", has_text=f"SELECT * FROM {table}")
    session_id = row.locator("td:nth-child(5) a").inner_text()
    row.locator("td:nth-child(5) a").click()
    page.wait_for_url(console.url(f"/console/sessions/{session_id}"))
    assert page.locator("h1").inner_text() == f"Session {session_id}"
    statements = {
        cells[6]: cells[2]
        for cells in (
            r.locator("td").all_inner_texts() for r in page.locator("main table tbody tr").all()
        )
        if cells[1] == "statement"
    }
    assert statements == {
        f"CREATE TABLE {table} (id int)": "allow",
        f"INSERT INTO {table} VALUES (1)": "allow",
        f"SELECT * FROM {table}": "allow",
        f"DELETE FROM {table}": "review",
    }, statements
    screenshot(page, "session")


def test_timeline_leaves_duration_empty_when_there_is_none(auditor: Page, console: Console) -> None:
    page = auditor
    marker = table_name("duration")
    console.sql(f"SELECT '{marker}' AS marker")
    shown_after_reloads(
        page, console.url("/console/audit?" + urllib.parse.urlencode({"text": marker})), 1
    )
    page.locator("#results tbody tr", has_text=marker).locator("td:nth-child(5) a").click()
    page.wait_for_url("**/console/sessions/*")
    durations = {
        cells[1]: cells[5]
        for cells in (
            r.locator("td").all_inner_texts() for r in page.locator("main table tbody tr").all()
        )
    }
    assert durations["statement"].endswith(" ms")
    assert durations["connection.start"] == ""
    assert durations["connection.end"] == ""


def test_chain_verifies(auditor: Page, console: Console) -> None:
    page = auditor
    page.goto(console.url("/console/verify"))
    verdict = page.locator("#verdict")
    assert verdict.inner_text().startswith("The trail verifies:"), verdict.inner_text()
    assert verdict.get_attribute("class") == "ok"
    assert page.locator("main table tbody tr").count() >= 1
    screenshot(page, "verify")


# CSRF and roles --------------------------------------------------------------------------


def test_vote_without_csrf_token_is_refused(auditor: Page, console: Console) -> None:
    context = auditor.context
    table = table_name("csrf")
    console.sql(f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)")
    proc = console.held(f"DELETE FROM {table}")
    try:
        request_id = console.request_for(table)["id"]
        vote = console.url(f"/console/approvals/{request_id}/approve")
        # The cookie is sent (the page answers), and a vote without the token is refused.
        assert context.request.get(console.url("/console/approvals"), max_redirects=0).ok
        for form in ({"reason": "no token"}, {"reason": "wrong", "csrf": "x" * 32}):
            answer = context.request.post(vote, form=form, max_redirects=0)
            assert answer.status == 403, (answer.status, answer.text())
            assert "CSRF" in answer.text()
        assert console.request(request_id)["status"] == "pending"
        assert console.request(request_id)["votes"] == []
        # The same POST with the session's token counts.
        auditor.goto(console.url("/console/approvals"))
        token = auditor.locator("meta[name=csrf-token]").get_attribute("content")
        assert token
        answer = context.request.post(
            vote, form={"reason": "with token", "csrf": token}, max_redirects=0
        )
        assert answer.status == 303
    finally:
        code, out, err = finish(proc, console.server)
    assert code == 0, err
    assert "DELETE 1" in out
    done = console.request(request_id)
    assert done["status"] == "executed"
    assert [(v["approver"], v["approve"], v["reason"]) for v in done["votes"]] == [
        (AUDITOR, True, "with token")
    ]


def test_approver_without_auditor_role(browser: Browser, console: Console) -> None:
    """Dana (dba, no auditor): she votes on the approvals page, and reads no trail."""
    table = table_name("roles")
    console.sql(f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)")
    context = new_context(browser)
    proc = console.held(f"DELETE FROM {table}")
    try:
        page = sign_in(context, console, APPROVER_ONLY, "/console/approvals")
        nav = page.locator("header nav").inner_text()
        assert "Approvals" in nav
        assert "Audit search" not in nav
        section = open_request(page, console, table)
        request_id = section.get_attribute("id")
        section.locator("button.approve").click()
        assert page.locator(".notice").inner_text() == f"Approved {request_id}: it is now approved"
        code, out, err = finish(proc, console.server)
        assert code == 0, err
        assert "DELETE 1" in out

        for path in ("/console/", "/console/audit", "/console/verify", "/console/sessions/x"):
            answer = page.goto(console.url(path))
            assert answer is not None
            assert answer.status == 403, (path, answer.status)
            assert "needs the auditor role" in page.content()
        assert context.request.get(console.url("/api/v1/activity/stream")).status == 403
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        context.close()


# lineage, policy, evidence ---------------------------------------------------------------


def test_lineage_answers_who_touched_and_what_was_touched(auditor: Page, console: Console) -> None:
    page = auditor
    table = table_name("lineage")
    console.sql(
        f"CREATE TABLE {table} (id int, email text)",
        f"INSERT INTO {table} VALUES (1, 'ada@example.org')",
        f"SELECT email FROM {table}",
    )
    page.goto(console.url("/console/lineage"))
    page.fill("form.filters input[name=table]", table)
    page.fill("form.filters input[name=identity]", "alice")
    page.click("form.filters button[type=submit]")
    who = page.locator("#who-touched tbody tr")
    assert who.count() >= 1
    rows = who.all_inner_texts()
    assert any(r.startswith("alice") and "read" in r for r in rows), rows
    assert any(r.startswith("alice") and "write" in r for r in rows), rows
    touched = page.locator("#touched-by tbody").inner_text()
    assert table in touched
    screenshot(page, "lineage")


def test_policy_dry_run_box(auditor: Page, console: Console) -> None:
    page = auditor
    page.goto(console.url("/console/policy"))
    assert "deletes-need-approval" in page.locator("#policy-text").inner_text()
    page.fill("form.dry-run textarea[name=sql]", "DELETE FROM orders WHERE id = 7")
    page.click("form.dry-run button[type=submit]")
    verdict = page.locator("#decision").inner_text()
    assert verdict.startswith("REVIEW by rule deletes-need-approval"), verdict
    page.fill("form.dry-run textarea[name=sql]", "SELECT 1")
    page.click("form.dry-run button[type=submit]")
    assert page.locator("#decision").inner_text().startswith("ALLOW"), page.content()
    screenshot(page, "policy")


def test_evidence_report_download(auditor: Page, console: Console) -> None:
    page = auditor
    page.goto(console.url("/console/evidence"))
    screenshot(page, "evidence")
    with page.expect_download() as pdf_download:
        page.click("form.filters button[type=submit]")
    download = pdf_download.value
    assert download.suggested_filename.startswith("dbward-evidence-soc2-")
    assert download.suggested_filename.endswith(".pdf")
    assert Path(download.path()).read_bytes().startswith(b"%PDF-")
