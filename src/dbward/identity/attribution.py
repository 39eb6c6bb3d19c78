"""Who (or what) is behind a statement from an AI workflow: agent, model, run.

Three sources, later ones refining earlier ones:

1. the identity's token claims (``agent``/``agent_name``, ``model``,
   ``model_version``, ``pipeline``, ``run_id``, ...);
2. the client's ``application_name`` when it holds ``key=value`` pairs
   (``agent=reporter,model=gpt-4o``); otherwise it is only the application;
3. sqlcommenter tags in a statement's comment
   (``SELECT ... /*model='gpt-4o',traceparent='00-...'*/``), URL-encoded
   values in single quotes.

Keys and values are bounded, so a client cannot grow audit records at will.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MAX_KEYS = 16
MAX_VALUE = 200

CLAIMS = {  # token claim -> attribute
    "agent": "agent",
    "agent_name": "agent",
    "agent_id": "agent",
    "model": "model",
    "model_version": "model_version",
    "pipeline": "pipeline",
    "pipeline_id": "pipeline",
    "run_id": "run_id",
    "workflow": "workflow",
}

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_COMMENT = re.compile(r"/\*(.*?)\*/", re.DOTALL)
_TAG = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.-]{0,63})\s*=\s*'((?:[^'\\]|\\.)*)'\s*(?:,|$)")
_PAIR = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.-]{0,63})\s*=\s*([^,;\s]+)\s*(?:[,;\s]|$)")


def _bounded(pairs: Iterable[tuple[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in pairs:
        if len(found) >= MAX_KEYS:
            break
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value)[:MAX_VALUE]
            if _KEY.fullmatch(key) and text:
                found[key.lower()] = text
    return found


def from_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Agent attributes in a verified token's claims."""
    return _bounded((CLAIMS[name], claims[name]) for name in CLAIMS if name in claims)


def from_application_name(name: str | None) -> dict[str, str]:
    """``key=value`` pairs in ``application_name`` (or sqlcommenter tags); {} for a plain name."""
    if not name or "=" not in name:
        return {}
    tags = _tags(name)
    if tags:
        return tags
    pairs = []
    position = 0
    while position < len(name):
        match = _PAIR.match(name, position)
        if match is None:
            return {}
        pairs.append((match[1], match[2]))
        position = match.end()
    return _bounded(pairs)


def _tags(text: str) -> dict[str, str]:
    pairs = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TAG.match(text, position)
        if match is None:
            return {}
        pairs.append((match[1], unquote(match[2].replace("\\'", "'"))))
        position = match.end()
    return _bounded(pairs)


def from_statement(text: str) -> dict[str, str]:
    """sqlcommenter tags in the statement's last comment; {} without one."""
    if "*/" not in text:
        return {}
    comments = _COMMENT.findall(text)
    return _tags(comments[-1]) if comments else {}


def merged(*sources: Mapping[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for source in sources:
        result.update(source)
    return dict(list(result.items())[:MAX_KEYS])
