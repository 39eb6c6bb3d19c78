"""How a record looks to each kind of receiver."""

from __future__ import annotations

import datetime
import json
import os
import re
from typing import Any

SYSLOG_FACILITY = 13  # log audit
SD_ID = "dbward@32473"  # 32473: the enterprise number RFC 5612 reserves for examples
_MSGID = re.compile(r"[^!-~]")  # printable US-ASCII without space
_SD_ESCAPE = re.compile(r'(["\\\]])')


def spool_line(item: dict[str, Any]) -> bytes:
    """A record as kept in a spool and sent to JSON receivers (stdout, webhooks)."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def _sd_value(value: object) -> str:
    """A structured-data parameter value: '"', '\\' and ']' escaped with a backslash."""
    return _SD_ESCAPE.sub(lambda m: "\\" + m[1], str(value))


def _severity(item: dict[str, Any]) -> int:
    data = item.get("data") or {}
    if item.get("kind") == "login.failed" or data.get("decision") in ("deny", "review"):
        return 4  # warning
    if data.get("sqlstate"):
        return 5  # notice
    return 6  # informational


def syslog_frame(item: dict[str, Any], hostname: str) -> bytes:
    """One RFC 5424 message with RFC 6587 octet-counting framing (also RFC 5425 over TLS):
    ``<PRI>1 TIME HOST dbward PID MSGID [dbward@32473 chain= seq= hash=] BOM JSON``."""
    pri = SYSLOG_FACILITY * 8 + _severity(item)
    when = datetime.datetime.fromtimestamp(float(item["ts"]), datetime.UTC)
    timestamp = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    msgid = _MSGID.sub("_", str(item.get("kind") or "-"))[:32] or "-"
    params = " ".join(
        f'{name}="{_sd_value(item.get(name, ""))}"' for name in ("chain", "seq", "hash")
    )
    host = _MSGID.sub("_", hostname)[:255] or "-"
    header = f"<{pri}>1 {timestamp} {host} dbward {os.getpid()} {msgid} [{SD_ID} {params}] "
    message = header.encode() + b"\xef\xbb\xbf" + spool_line(item)
    return str(len(message)).encode() + b" " + message
