"""The MySQL error packets dbward answers with (codes clients and tools know)."""

from __future__ import annotations

from dbward.codec.mysql.packets import Err
from dbward.policy.decide import UNPARSABLE, Decision
from dbward.policy.model import Action
from dbward.sql.facts import StatementKind

ACCESS_DENIED = 1045  # ER_ACCESS_DENIED_ERROR (28000): login refused
BAD_DB = 1049  # ER_BAD_DB_ERROR (42000): no such connection
NO_DB = 1046  # ER_NO_DB_ERROR (3D000)
TOO_MANY = 1040  # ER_CON_COUNT_ERROR (08004)
TABLE_ACCESS_DENIED = 1142  # ER_TABLEACCESS_DENIED_ERROR (42000)
SPECIFIC_ACCESS_DENIED = 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR (42000)
PARSE_ERROR = 1064  # ER_PARSE_ERROR (42000)
NOT_ALLOWED = 1148  # ER_NOT_ALLOWED_COMMAND (42000): LOAD DATA LOCAL
UNKNOWN_COMMAND = 1047  # ER_UNKNOWN_COM_ERROR (08S01)
QUERY_INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED (70100)
SERVER_SHUTDOWN = 1053  # ER_SERVER_SHUTDOWN (08S01)
INSECURE_TRANSPORT = 3159  # ER_SECURE_TRANSPORT_REQUIRED (HY000)
HANDSHAKE = 1043  # ER_HANDSHAKE_ERROR (08S01)
INTERNAL = 1815  # ER_INTERNAL_ERROR (HY000)
AUDIT_DOWN = 1026  # ER_ERROR_ON_WRITE (HY000)

LOCAL_INFILE_RULE = "protocol:local-infile"
_TABLE_KINDS = frozenset({StatementKind.READ, StatementKind.WRITE, StatementKind.DDL})
# Where a guardrail's advice names PostgreSQL's way, MySQL's instead.
_MYSQL_HINTS = {
    "guardrail:server-access": "move data through your own client instead: SELECT the rows "
    "(mysql --batch > file) and INSERT them",
    UNPARSABLE: "fix the syntax; dbward refuses what it cannot parse as MySQL",
}


def prefixed(message: str) -> str:
    """``message`` after ``dbward:``, said once ("dbward cannot ..." -> "dbward: cannot ...")."""
    if message.startswith("dbward "):
        message = message[len("dbward ") :]
    return f"dbward: {message}"


def err(code: int, sqlstate: str, message: str) -> bytes:
    return Err(code, sqlstate, message).encode()


def refusal(decision: Decision, kind: StatementKind | None) -> bytes:
    """The ERR packet for a statement the policy did not allow: 1142 where it touches
    tables, 1227 for privileges and administration, 1064 for text dbward cannot parse."""
    message = f"{prefixed(decision.message)} (rule {decision.rule})"
    if decision.action is Action.REVIEW:
        message += (
            f"; needs approval by {decision.quorum} of: {', '.join(decision.approver_groups)}"
        )
        if decision.approval is not None:
            message += f" (request {decision.approval})"
    hint = _MYSQL_HINTS.get(decision.rule, decision.hint) if decision.hint else ""
    if hint:
        message += f"; {hint}"
    if decision.rule == UNPARSABLE:
        return err(PARSE_ERROR, "42000", message)
    if decision.rule == LOCAL_INFILE_RULE:
        return err(NOT_ALLOWED, "42000", message)
    if decision.sqlstate == "57014":
        return err(QUERY_INTERRUPTED, "70100", message)
    if kind is None or kind in _TABLE_KINDS:
        return err(TABLE_ACCESS_DENIED, "42000", message)
    return err(SPECIFIC_ACCESS_DENIED, "42000", message)
