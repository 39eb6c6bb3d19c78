"""Who is behind a connection: the verified identity every later stage uses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IdentityKind(StrEnum):
    HUMAN = "human"
    SERVICE = "service"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified identity.

    ``name`` is what audit records and ``application_name`` show (an email for
    people, the token name for services and agents). ``provider`` says how it
    was verified: ``oidc:<issuer>`` or ``token``.
    """

    name: str
    kind: IdentityKind
    groups: tuple[str, ...]
    provider: str
    subject: str
    expires_at: float | None = None
    token_id: str | None = None
    # Agent metadata from the token (agent, model, model_version, pipeline, run_id, ...).
    attributes: tuple[tuple[str, str], ...] = ()
