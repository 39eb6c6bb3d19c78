"""A real OpenID Connect provider for tests: panva's oidc-provider run under Node.

``tests/oidc_provider/server.mjs`` serves plain HTTP on 127.0.0.1 with the
device authorization grant (RFC 8628), a public client ``dbward-cli`` (device
code + refresh token) and a client ``dbward-console`` (authorization code +
PKCE). Its accounts are a fixed directory handed over at start; ID tokens are
RS256 with a key made at start and carry ``email``, ``email_verified``, ``name``
and ``groups`` for the scopes ``openid email profile groups``.

:class:`OidcProvider` starts it on a free port and plays the human of the
device flow over plain HTTP (a cookie jar, no browser)::

    with OidcProvider({"alice@example.com": {"groups": ["dba"]}}) as idp:
        ...  # POST idp.discovery["device_authorization_endpoint"], poll the token endpoint
        idp.approve_device(user_code, "alice@example.com")

Node and npm must be on PATH; ``node_modules`` is installed on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
CLI_CLIENT_ID = "dbward-cli"
CONSOLE_CLIENT_ID = "dbward-console"
NPM_TIMEOUT = 300.0
HTTP_TIMEOUT = 10.0
MAX_PAGES = 12


def _installed_version(directory: Path) -> str | None:
    manifest = directory / "node_modules" / "oidc-provider" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _locked_version(directory: Path) -> str | None:
    try:
        lock = json.loads((directory / "package-lock.json").read_text())
        return str(lock["packages"]["node_modules/oidc-provider"]["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_node_modules(directory: Path = PROVIDER_DIR) -> None:
    """Install the provider's npm packages unless the locked version is already there.

    ``npm ci`` when ``package-lock.json`` exists, else ``npm install`` (which
    writes the lock file). Serialised across processes by a lock file.
    """
    installed = _installed_version(directory)
    if installed is not None and installed == _locked_version(directory):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is not on PATH: the OIDC provider fixture needs Node.js 20+ and npm "
            "(apt-get install nodejs npm)"
        )
    with open(directory / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = _installed_version(directory)
        if installed is not None and installed == _locked_version(directory):
            return
        has_lock = (directory / "package-lock.json").exists()
        argv = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
        result = subprocess.run(
            argv,
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if result.returncode != 0 or _installed_version(directory) is None:
            raise RuntimeError(
                f"{' '.join(argv[1:])} in {directory} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )


class _Forms(HTMLParser):
    """The forms of a page: id -> (method, action, {name: value} of its inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, tuple[str, str, dict[str, str]]] = {}
        self._current: str | None = None
        self.title = ""
        self.status = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            form_id = attr.get("id", f"form{len(self.forms)}")
            self.forms[form_id] = (attr.get("method", "get").upper(), attr.get("action", ""), {})
            self._current = form_id
        elif tag == "input" and self._current is not None and attr.get("name"):
            self.forms[self._current][2][attr["name"]] = attr.get("value", "")
        elif tag == "title":
            self._in_title = True
        if attr.get("id") == "status":
            self.status = attr.get("data-status", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


class _Page:
    def __init__(self, url: str, status: int, body: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        parser = _Forms()
        parser.feed(body)
        self.forms = parser.forms
        self.title = parser.title.strip()
        self.state = parser.status  # data-status of the device flow's pages

    def form(self, form_id: str) -> tuple[str, str, dict[str, str]]:
        if form_id not in self.forms:
            raise InteractionError(f"no form {form_id!r} on {self.describe()}")
        return self.forms[form_id]

    def describe(self) -> str:
        path = urllib.parse.urlsplit(self.url).path
        state = f", status {self.state!r}" if self.state else ""
        return f"the page {path} (HTTP {self.status}{state}, {self.title!r}): {self.body[:600]!r}"


class InteractionError(AssertionError):
    """The provider's pages did not go the way a person logging in expects."""


class _NoErrors(urllib.request.HTTPErrorProcessor):
    """Hand every response back as it is: no HTTPError, no automatic redirect."""

    def http_response(self, request: Any, response: Any) -> Any:
        return response


class _Browser:
    """A person's browser reduced to a cookie jar, GET, form POST and redirects.

    Redirects are followed only within ``origin`` (the provider); one that
    leaves it (to a client's redirect URI) ends the walk, as a page whose
    ``url`` is that redirect's target.
    """

    def __init__(self, origin: str) -> None:
        self._origin = origin.rstrip("/") + "/"
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()), _NoErrors()
        )

    def _send(self, request: urllib.request.Request) -> tuple[int, str, str | None]:
        with self._opener.open(request, timeout=HTTP_TIMEOUT) as response:
            body = response.read().decode("utf-8", "replace")
            return int(response.status), body, response.headers.get("Location")

    def go(self, url: str, form: Mapping[str, str] | None = None) -> _Page:
        """GET ``url`` (or POST ``form`` to it) and follow redirects to a page."""
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(  # noqa: S310 - the provider's own http URLs
            url, data=data, method="GET" if form is None else "POST"
        )
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        for _ in range(MAX_PAGES):
            status, body, location = self._send(request)
            if status in (301, 302, 303, 307, 308) and location:
                url = urllib.parse.urljoin(url, location)
                if not url.startswith(self._origin):
                    return _Page(url, status, "")
                request = urllib.request.Request(url, method="GET")  # noqa: S310 - as above
                continue
            return _Page(url, status, body)
        raise InteractionError(f"too many redirects from {url}")

    def submit(self, page: _Page, form_id: str, **extra: str) -> _Page:
        method, action, fields = page.form(form_id)
        if method != "POST":
            raise InteractionError(f"form {form_id!r} is {method}, not POST")
        return self.go(urllib.parse.urljoin(page.url, action), {**fields, **extra})


class OidcProvider:
    """oidc-provider on 127.0.0.1 with the given accounts; a context manager.

    ``accounts`` maps an account id (its email, also the ``sub``) to its claims:
    ``name``, ``groups`` (list of strings), optionally ``email`` and
    ``email_verified`` (default: the id and true).
    """

    client_id = CLI_CLIENT_ID
    console_client_id = CONSOLE_CLIENT_ID

    def __init__(
        self,
        accounts: Mapping[str, Mapping[str, Any]],
        *,
        console_redirect_uris: Sequence[str] = (),
        console_client_secret: str | None = None,
        id_token_ttl: int = 3600,
        access_token_ttl: int = 3600,
        refresh_token_ttl: int = 86400,
        device_code_ttl: int = 600,
        startup_timeout: float = 30.0,
    ) -> None:
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: the OIDC provider fixture needs Node.js 20+")
        self.accounts = {k: dict(v) for k, v in accounts.items()}
        env = {
            **os.environ,
            "OIDC_ACCOUNTS": json.dumps(self.accounts),
            "OIDC_CONSOLE_REDIRECT_URIS": ",".join(console_redirect_uris),
            "OIDC_ID_TOKEN_TTL": str(id_token_ttl),
            "OIDC_ACCESS_TOKEN_TTL": str(access_token_ttl),
            "OIDC_REFRESH_TOKEN_TTL": str(refresh_token_ttl),
            "OIDC_DEVICE_CODE_TTL": str(device_code_ttl),
        }
        env.pop("OIDC_CONSOLE_CLIENT_SECRET", None)
        if console_client_secret is not None:
            env["OIDC_CONSOLE_CLIENT_SECRET"] = console_client_secret
        self.console_client_secret = console_client_secret
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._proc = subprocess.Popen(
                [node, "server.mjs", "0"],
                cwd=PROVIDER_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
            ready = self._wait_ready(startup_timeout)
            self.port = int(ready["port"])
            self.issuer = str(ready["issuer"])
            self.discovery: dict[str, Any] = self._get_json(
                f"{self.issuer}/.well-known/openid-configuration"
            )
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None
        stdout = self._proc.stdout
        assert stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, name="oidc-provider-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"the OIDC provider exited with {self._proc.returncode} before it was "
                        f"ready:\n{self.log_tail()}"
                    ) from None
                continue
            with contextlib.suppress(ValueError):
                ready = json.loads(line)
                if isinstance(ready, dict) and "port" in ready and "issuer" in ready:
                    return ready
        raise TimeoutError(f"the OIDC provider was not ready after {timeout} s:\n{self.log_tail()}")

    @staticmethod
    def _get_json(url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            body = json.loads(response.read())
        assert isinstance(body, dict)
        return body

    @property
    def verification_uri(self) -> str:
        """Where a person enters a user code (the ``verification_uri`` of every device code)."""
        return f"{self.issuer}/device"

    def approve_device(self, user_code: str, account: str) -> None:
        """Play the person: enter ``user_code``, confirm, log in as ``account``, consent.

        After this the device code's next token request gets tokens. Raises
        :class:`InteractionError` if any page is not the expected one (an unknown,
        expired or used code, an unknown account).
        """
        browser = _Browser(self.issuer)
        page = self._confirm_page(browser, user_code)
        page = browser.submit(page, "op.deviceConfirmForm")
        page = self._login(browser, page, account)
        page = browser.submit(page, "confirm")
        if page.status != 200 or page.state != "success":
            raise InteractionError(f"approval of the device did not succeed: {page.describe()}")

    def deny_device(
        self, user_code: str, account: str, *, at: Literal["consent", "confirm"] = "consent"
    ) -> None:
        """Play the person who refuses: the device code then ends in ``access_denied``.

        ``at="consent"`` logs in as ``account`` and denies consent;
        ``at="confirm"`` aborts on the page that shows the user code, before any
        login (``account`` is not used then).
        """
        browser = _Browser(self.issuer)
        page = self._confirm_page(browser, user_code)
        if at == "confirm":
            page = browser.submit(page, "op.deviceConfirmForm", abort="yes")
        else:
            page = browser.submit(page, "op.deviceConfirmForm")
            page = self._login(browser, page, account)
            if "confirm" not in page.forms:
                raise InteractionError(f"expected the consent page: {page.describe()}")
            page = browser.submit(page, "abort")
        if page.state != "aborted":
            raise InteractionError(f"the denial was not acknowledged: {page.describe()}")

    def authorize(self, authorization_url: str, account: str) -> str:
        """Play the person at an authorization URL a client (the console) made.

        Opens ``authorization_url`` (the provider's authorization endpoint with
        the client's query), logs in as ``account``, consents, and returns the
        URL the provider then redirects to: the client's redirect URI with
        ``code`` and ``state`` (or ``error``). That URL is not opened.
        """
        if not authorization_url.startswith(self.issuer + "/"):
            raise ValueError(f"{authorization_url!r} is not on this provider ({self.issuer})")
        browser = _Browser(self.issuer)
        page = browser.go(authorization_url)
        if "login" in page.forms:
            page = self._login(browser, page, account)
        if "confirm" in page.forms:
            page = browser.submit(page, "confirm")
        if page.url.startswith(self.issuer + "/"):
            raise InteractionError(
                f"the authorization did not end in a redirect: {page.describe()}"
            )
        return page.url

    def _confirm_page(self, browser: _Browser, user_code: str) -> _Page:
        page = browser.go(self.verification_uri)
        page = browser.submit(page, "op.deviceInputForm", user_code=user_code)
        if page.state != "confirm":
            raise InteractionError(f"the user code was not accepted: {page.describe()}")
        return page

    @staticmethod
    def _login(browser: _Browser, page: _Page, account: str) -> _Page:
        page = browser.submit(page, "login", login=account)
        if page.status != 200 or "confirm" not in page.forms:
            raise InteractionError(f"logging in as {account!r} failed: {page.describe()}")
        return page

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the provider's stderr (it logs no tokens, codes or cookies)."""
        if self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - chars))
        return self._stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL after 5 s); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            self._stderr.close()
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
