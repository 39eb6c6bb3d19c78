"""Times in API parameters: ISO 8601 (UTC unless an offset is given), or ``24h``/``7d`` ago."""

from __future__ import annotations

import datetime
import time

from fastapi import HTTPException

from dbward.identity.tokens import parse_ttl


def parse_time(text: str | None) -> float | None:
    if text is None or text == "":
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
        raise HTTPException(
            422, f"{text!r} is not a time: give 2026-11-01, 2026-11-01T09:30Z, now, 24h or 7d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()
