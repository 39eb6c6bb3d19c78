"""Loading dbward.yaml and reading upstream credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbward.config import Credentials as CredentialSpec
from dbward.config import TlsMode, load_config
from dbward.credentials import read_credentials
from dbward.errors import ConfigError, CredentialError

GOOD = """
listeners:
  - {host: 0.0.0.0, port: 7432}
connections:
  app-prod:
    environment: production
    host: db.internal
    database: app
    credentials: {user: dbward, password_env: APP_PROD_PW}
    tls: {mode: verify-full, ca_file: /etc/ssl/db-ca.pem}
identity:
  oidc:
    - issuer: https://login.example.com
      audience: dbward
"""


def test_a_full_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dbward.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.state_dir == tmp_path / ".dbward"
    assert config.audit_path == tmp_path / ".dbward" / "audit.db"
    app = config.connections["app-prod"]
    assert (app.environment, app.port, app.tls.mode) == ("production", 5432, TlsMode.VERIFY_FULL)
    assert config.listeners[0].require_tls
    assert config.identity.oidc[0].groups_claim == "groups"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("connections: {a: {database: x}}", "connections.a.credentials: Field required"),
        ("connections: {}\nlisteners: [{port: 99999}]", "listeners.0.port"),
        ("connections: {}\nbogus: 1", "bogus: Extra inputs are not permitted"),
        (
            "connections: {}\nidentity: {oidc: [{issuer: x, audience: y, algorithms: [HS256]}]}",
            "HS256",
        ),
        ("connections: [", "line 1, column 15 is not valid YAML"),
        ("- a list", "the top level must be a mapping"),
    ],
)
def test_config_errors_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dbward.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in info.value.message
    assert str(path) in info.value.message


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_credentials_from_env_and_file_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", "s3cret-value")
    creds = read_credentials(CredentialSpec(user="app", password_env="PW"), "c")
    assert creds.password == "s3cret-value"
    assert "s3cret-value" not in repr(creds)
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    creds = read_credentials(CredentialSpec(user="app", password_file=secret_file), "c")
    assert creds.password == "from-file"


def test_credential_errors_name_the_source_not_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_PW", raising=False)
    with pytest.raises(CredentialError, match="NOPE_PW"):
        read_credentials(CredentialSpec(user="app", password_env="NOPE_PW"), "c")
    with pytest.raises(CredentialError, match="cannot read the upstream password file"):
        read_credentials(CredentialSpec(user="app", password_file=Path("/nonexistent/pw")), "c")
