"""Times as people give them on the command line and in API parameters."""

from __future__ import annotations

import datetime
import time

from dbward.identity.tokens import parse_ttl


def parse_when(text: str | None) -> float | None:
    """ISO 8601 (``2026-11-01``, ``2026-11-01T09:30``; UTC unless an offset is given),
    ``now``, or a duration back from now (``24h``, ``7d``). ValueError names the forms."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if text == "now":
        return time.time()
    try:
        return time.time() - parse_ttl(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give 2026-11-01, 2026-11-01T09:30, now, or 24h / 7d "
            "back from now"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()
