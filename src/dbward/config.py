"""The ``dbward.yaml`` model: listeners, named connections, identity providers, audit.

Loaded once at start; every error names the setting at fault and the file.
Secrets never live in this file: connections name where dbward reads the
upstream password from (an environment variable or a file).
"""

from __future__ import annotations

import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dbward.errors import ConfigError
from dbward.identity.models import IdentityKind


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsMode(StrEnum):
    """How dbward talks TLS to an upstream, with libpq's names and meanings."""

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class ListenerTls(_Model):
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ListenerTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "give both cert_file and key_file, or neither (a self-signed one is made)"
            )
        return self


class Listener(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=6432, ge=0, le=65535)
    protocol: Literal["postgres", "mysql"] = Field(
        default="postgres",
        description="the wire protocol clients speak here; a mysql listener serves "
        "connections whose engine is mysql (MySQL or MariaDB)",
    )
    server_version: str | None = Field(
        default=None,
        pattern=r"^[0-9][!-~]{0,59}$",
        description="mysql: the server version clients are told in the greeting, before "
        "dbward knows which upstream they want; default: the first mysql connection's own "
        "(read from its greeting), so clients pick the right dialect and collations",
    )
    tls: ListenerTls = ListenerTls()
    require_tls: bool = Field(
        default=True,
        description="refuse clients that do not start TLS (tokens are sent as passwords)",
    )


class Credentials(_Model):
    """Where the upstream user name and password are read from; never the values."""

    user: str | None = None
    user_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Credentials:
        if self.user is None and self.user_env is None:
            raise ValueError("set user or user_env")
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("set password_env or password_file, not both")
        return self


class UpstreamTls(_Model):
    mode: TlsMode = TlsMode.PREFER
    ca_file: Path | None = Field(default=None, description="system trust store when unset")
    server_name: str | None = None


class ApproverRule(_Model):
    group: list[str] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1, le=20)


class AccessRole(_Model):
    """A role that just-in-time access can grant on a connection."""

    approvers: ApproverRule
    groups: list[str] = Field(
        default=[],
        description="policy groups a grant adds to the identity on this connection "
        "(default: the role's name)",
    )
    max_duration: float = Field(default=8 * 3600, gt=0, description="longest grant, seconds")
    reason_required: bool = True


class AccessConfig(_Model):
    """Just-in-time access: who may connect only with a time-bound grant."""

    require_grant: bool = Field(
        default=True, description="connect only with an active grant for this connection"
    )
    roles: dict[str, AccessRole] = Field(min_length=1)
    break_glass: list[str] = Field(
        default=[],
        description="groups granted access at once, without approval, flagged for review",
    )


class Connection(_Model):
    engine: Literal["postgres", "mysql"] = Field(
        default="postgres", description="postgres, or mysql for MySQL and MariaDB"
    )
    environment: str = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535, description="default 5432, or 3306 for mysql")
    database: str
    credentials: Credentials
    tls: UpstreamTls = UpstreamTls()
    connect_timeout: float = Field(default=10.0, gt=0)
    access: AccessConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _engine_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("engine") == "mysql" and "port" not in data:
            return {**data, "port": 3306}
        return data


class OidcProvider(_Model):
    issuer: str
    audience: str | list[str]
    jwks_uri: str | None = Field(
        default=None, description="defaults to the issuer's OpenID discovery document"
    )
    algorithms: list[str] = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
    username_claim: str = "email"
    groups_claim: str = "groups"
    kind: IdentityKind = IdentityKind.HUMAN
    jwks_cache_seconds: float = Field(default=600.0, gt=0)
    jwks_refetch_seconds: float = Field(
        default=30.0,
        gt=0,
        description="least time between refetches for an unknown key id (key rotation)",
    )
    leeway_seconds: float = Field(default=30.0, ge=0)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        allowed = {
            "RS256",
            "RS384",
            "RS512",
            "ES256",
            "ES384",
            "ES512",
            "PS256",
            "PS384",
            "PS512",
            "EdDSA",
        }
        bad = [alg for alg in value if alg not in allowed]
        if bad:
            raise ValueError(
                f"algorithms {bad} are not allowed: only asymmetric signatures "
                f"({', '.join(sorted(allowed))}) can be verified against a JWKS"
            )
        if not value:
            raise ValueError("at least one algorithm is needed")
        return value


class IdentityConfig(_Model):
    oidc: list[OidcProvider] = []
    tokens: bool = Field(default=True, description="accept dbward service and agent tokens")
    login_client_id: str | None = Field(
        default=None,
        description="the OIDC client `dbward login` uses (device authorization flow) with "
        "the first identity.oidc issuer",
    )
    login_scopes: str = "openid email profile groups offline_access"
    credential_ttl: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 86400,
        description="seconds a one-time credential from `dbward connect` stays valid",
    )


_INSTANCE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class AuditPostgres(_Model):
    """The PostgreSQL audit store (schema ``dbward_audit``), shared by several instances."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    database: str
    credentials: Credentials
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    ca_file: Path | None = None
    connect_timeout: float = Field(default=5.0, gt=0)


class SinkConfig(_Model):
    """A copy of the trail sent elsewhere as it is written (spooled on disk meanwhile)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: Literal["syslog", "webhook", "stdout"]
    host: str | None = Field(default=None, description="syslog: the receiver")
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: bool = Field(default=False, description="syslog over TLS (RFC 5425)")
    ca_file: Path | None = Field(default=None, description="TLS: system trust store when unset")
    url: str | None = Field(default=None, description="webhook: http(s) URL to POST to")
    secret_env: str | None = Field(default=None, description="webhook: HMAC key's variable")
    secret_file: Path | None = None
    batch: int = Field(default=100, ge=1, le=10_000, description="records per delivery")
    timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> SinkConfig:
        if self.type == "syslog" and (self.host is None or self.port is None):
            raise ValueError("a syslog sink needs host and port")
        if self.type == "webhook":
            if self.url is None or not self.url.startswith(("http://", "https://")):
                raise ValueError("a webhook sink needs an http:// or https:// url")
            if (self.secret_env is None) == (self.secret_file is None):
                raise ValueError("a webhook sink needs secret_env or secret_file (one)")
        return self


class AuditConfig(_Model):
    enabled: bool = Field(
        default=True,
        description="false: no trail at all, for benchmarks and experiments only (refused "
        "when a connection's environment is listed in fail_closed)",
    )
    store: Literal["sqlite", "postgres"] = Field(
        default="sqlite",
        description="sqlite: one file in the state directory; postgres: a database several "
        "instances share (audit.postgres)",
    )
    path: Path | None = Field(default=None, description="defaults to <state_dir>/audit.db")
    postgres: AuditPostgres | None = None
    sinks: list[SinkConfig] = Field(default=[], description="syslog, webhook, stdout copies")
    fail_closed: list[str] = Field(
        default=["production"],
        description="environments whose statements are refused while the audit store "
        "cannot be written (records are still journalled); others keep running",
    )
    instance: str = Field(
        default_factory=lambda: _INSTANCE_CHARS.sub("-", socket.gethostname())[:64] or "dbward",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="this dbward instance's name in the trail: each process keeps its own "
        "hash chain, <instance>-<worker>; defaults to the host name",
    )
    checkpoint_interval: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="seconds between signed checkpoints of the chain's head (also at shutdown)",
    )

    @model_validator(mode="after")
    def _store_settings(self) -> AuditConfig:
        if self.store == "postgres" and self.postgres is None:
            raise ValueError("store: postgres needs the audit.postgres settings")
        names = [sink.name for sink in self.sinks]
        if len(names) != len(set(names)):
            raise ValueError("sink names must differ")
        return self

    synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="full: fdatasync the journal before a result is released (survives a "
        "power loss, at the cost of a disk flush per statement)",
    )


class Secret(_Model):
    """Where a secret is read from: an environment variable or a file (never the value)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give env or file (one)")
        return self


class WebhookNotifier(_Model):
    url: str = Field(pattern=r"^https?://")
    secret: Secret
    timeout: float = Field(default=5.0, gt=0)


class SlackNotifier(_Model):
    channel: str
    bot_token: Secret
    signing_secret: Secret
    api_url: str = Field(default="https://slack.com/api", pattern=r"^https?://")
    timeout: float = Field(default=5.0, gt=0)


class ApprovalsConfig(_Model):
    """Held statements and access requests: how long they wait, who is told."""

    wait: float = Field(
        default=120.0, gt=0, le=3600, description="seconds a held statement waits in session"
    )
    request_ttl: float = Field(
        default=3600.0,
        gt=0,
        description="seconds a request stays open for approval (its identical statement "
        "may be re-run once approved)",
    )
    max_window: float = Field(
        default=8 * 3600, gt=0, description="longest time window an approver may give"
    )
    poll_interval: float = Field(default=0.2, gt=0, le=5)
    webhook: WebhookNotifier | None = None
    slack: SlackNotifier | None = None
    console_url: str | None = Field(
        default=None, description="base URL shown to approvers (the API / console)"
    )


class ConsoleConfig(_Model):
    """The web console's sign-in: OpenID Connect authorization code flow with PKCE."""

    client_id: str
    client_secret: Secret | None = Field(
        default=None, description="for a confidential client; a public one needs none"
    )
    public_url: str = Field(
        pattern=r"^https?://",
        description="where browsers reach the API; the redirect URI is "
        "<public_url>/console/callback",
    )
    session_ttl: float = Field(default=8 * 3600, gt=0, le=7 * 86400)
    scopes: str = "openid email profile groups"


class ApiConfig(_Model):
    """The HTTP API (``/api/v1``) and console (``/console``), served by the first worker;
    automation sends a dbward token or an ID token, people sign in to the console."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=6480, ge=0, le=65535)
    tls: ListenerTls = ListenerTls()
    roles: dict[Literal["admin", "auditor", "approver", "user"], list[str]] = Field(
        default={"admin": ["dbward-admins"], "auditor": ["auditors"], "approver": ["approvers"]},
        description="role -> the groups whose members have it (everyone signed in is a user)",
    )
    console: ConsoleConfig | None = None


class PolicyConfig(_Model):
    file: Path | None = Field(
        default=None,
        description="policy file (see docs/policy.md); without one the built-in "
        "guardrails are in force. Reloaded on change and on SIGHUP",
    )
    reload_interval: float = Field(default=1.0, gt=0, description="seconds between checks")


class Limits(_Model):
    startup_timeout: float = Field(default=15.0, gt=0)
    max_startup_packet: int = Field(default=10_000, ge=64)
    max_message_size: int = Field(default=256 * 1024 * 1024, ge=1024)
    drain_timeout: float = Field(default=30.0, ge=0)
    max_connections: int = Field(default=1000, ge=1, description="client sessions at once")


class Config(_Model):
    state_dir: Path = Path(".dbward")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="processes sharing the listening ports (SO_REUSEPORT); one per core",
    )
    listeners: list[Listener] = [Listener()]
    connections: dict[str, Connection]
    identity: IdentityConfig = IdentityConfig()
    audit: AuditConfig = AuditConfig()
    policy: PolicyConfig = PolicyConfig()
    api: ApiConfig = ApiConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _trail_where_required(self) -> Config:
        if not self.audit.enabled:
            required = sorted(
                name
                for name, c in self.connections.items()
                if c.environment in self.audit.fail_closed
            )
            if required:
                raise ValueError(
                    f"audit.enabled: false is refused: connection(s) {', '.join(required)} "
                    "are in an environment listed in audit.fail_closed"
                )
        return self

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.state_dir / "audit.db"

    @property
    def audit_journal_dir(self) -> Path:
        return self.audit_path.parent / "audit-journal"

    @property
    def tokens_path(self) -> Path:
        return self.state_dir / "tokens.db"

    @property
    def access_path(self) -> Path:
        return self.state_dir / "access.db"


def parse_config(data: Any, *, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate a mapping as a :class:`Config`; relative paths are taken from ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
    if base_dir is not None and not config.state_dir.is_absolute():
        config = config.model_copy(update={"state_dir": base_dir / config.state_dir})
    policy_file = config.policy.file
    if base_dir is not None and policy_file is not None and not policy_file.is_absolute():
        policy = config.policy.model_copy(update={"file": base_dir / policy_file})
        config = config.model_copy(update={"policy": policy})
    return config


def load_config(path: Path) -> Config:
    """Read and validate ``dbward.yaml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {exc}") from None
    return parse_config(data, source=str(path), base_dir=path.resolve().parent)
