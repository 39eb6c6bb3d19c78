"""What dbward knows about a statement once it has parsed it: the facts policy decides on.

Pure data, frozen. The analyser (:mod:`dbward.sql.analyze`) produces them from
PostgreSQL's own parse tree; :mod:`dbward.sql.session` qualifies table names
through the session's ``search_path`` and temporary tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class StatementKind(StrEnum):
    """What a statement does, from least to most consequential for policy purposes."""

    READ = "read"  # SELECT, EXPLAIN (without ANALYZE), SHOW, COPY ... TO, FETCH
    WRITE = "write"  # INSERT, UPDATE, DELETE, MERGE, COPY ... FROM, writing functions
    DDL = "ddl"  # CREATE / ALTER / DROP / TRUNCATE of schema objects
    PRIVILEGE = "privilege"  # GRANT, REVOKE, roles, ownership, policies (RLS)
    ADMIN = "admin"  # VACUUM, ANALYZE, CLUSTER, CHECKPOINT, server administration
    TRANSACTION = "transaction"  # BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
    SESSION = "session"  # SET, RESET, SHOW-less session state, PREPARE, LISTEN, ...
    UNKNOWN = "unknown"  # dbward cannot see what it does (DO, CALL, unknown EXECUTE)


class Risk(StrEnum):
    """Risk tags: the facts guardrails and rules most often match on."""

    DESTRUCTIVE_DDL = "destructive-ddl"  # DROP / TRUNCATE of tables, schemas, databases
    UNBOUNDED_WRITE = "unbounded-write"  # UPDATE / DELETE without an effective WHERE
    PRIVILEGE_CHANGE = "privilege-change"  # GRANT, REVOKE, CREATE/ALTER/DROP ROLE, ...
    PRIVILEGE_ESCALATION = "privilege-escalation"  # confers SUPERUSER, BYPASSRLS, ...
    DYNAMIC_SQL = "dynamic-sql"  # DO, functions that run SQL given as text
    SERVER_FILE_ACCESS = "server-file-access"  # COPY to/from a server file, pg_read_file
    PROGRAM_EXECUTION = "program-execution"  # COPY ... PROGRAM
    LARGE_OBJECT = "large-object"  # lo_import / lo_export / lo_unlink ...
    DATA_EXPORT = "data-export"  # COPY ... TO, query_to_xml and friends
    ROLE_CHANGE = "role-change"  # SET ROLE, SET SESSION AUTHORIZATION
    CONFIG_CHANGE = "config-change"  # SET, set_config, ALTER SYSTEM, ALTER ... SET
    ADMIN_FUNCTION = "admin-function"  # pg_terminate_backend, pg_reload_conf, ...


@dataclass(frozen=True, slots=True)
class Relation:
    """A table (or view, sequence, ...) named in a statement.

    ``schema`` is None when the statement did not qualify the name and it has
    not been resolved through a ``search_path`` yet.
    """

    name: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def temporary(self) -> bool:
        return self.schema == "pg_temp"


@dataclass(frozen=True, slots=True)
class Column:
    """A column referenced; ``relation`` is None when the statement leaves it ambiguous."""

    name: str
    relation: Relation | None = None

    def __str__(self) -> str:
        return f"{self.relation}.{self.name}" if self.relation else self.name


@dataclass(frozen=True, slots=True)
class StatementFacts:
    """One statement (one part of a multi-statement string).

    ``where`` is only set for UPDATE and DELETE: True when the WHERE clause can
    limit the rows touched, False when it is missing or a tautology.
    """

    command: str  # "SELECT", "DELETE", "DROP TABLE", "EXPLAIN ANALYZE", ...
    kind: StatementKind
    reads: tuple[Relation, ...] = ()
    writes: tuple[Relation, ...] = ()
    columns: tuple[Column, ...] = ()
    written: tuple[Column, ...] = ()  # of those, what it assigns: UPDATE SET, INSERT (cols)
    functions: tuple[str, ...] = ()
    risks: frozenset[Risk] = frozenset()
    where: bool | None = None
    # Session effects, applied once the statement has been allowed:
    creates_temp: tuple[str, ...] = ()  # temporary tables created
    temp_until_commit: tuple[str, ...] = ()  # ... of them, dropped when the transaction ends
    settings: tuple[tuple[str, str | None], ...] = ()  # SET name = value (None: RESET)
    prepares: str | None = None  # SQL-level PREPARE name
    executes: str | None = None  # SQL-level EXECUTE name
    deallocates: str | None = None  # DEALLOCATE name ("" for ALL)
    # Before a session qualified the names (kept so EXECUTE can resolve afresh):
    unresolved: StatementFacts | None = field(default=None, compare=False, repr=False)

    @property
    def tables(self) -> tuple[Relation, ...]:
        """Every relation the statement reads or writes, each once."""
        return tuple(dict.fromkeys(self.reads + self.writes))


@dataclass(frozen=True, slots=True)
class Analysis:
    """A whole statement string, part by part.

    ``shape`` is the text with every constant replaced by ``$n``: the same
    analysis serves every text of that shape, so it keeps no literal value
    (the text itself stays with whoever asked). ``error`` is set when
    PostgreSQL's grammar does not accept the text; such a statement is
    refused, never passed through unchecked. ``cacheable`` is False when the
    facts depend on constant values (``SET search_path = ...``, a function
    body given as a string, ...): such an analysis serves only its own text.
    """

    shape: str
    statements: tuple[StatementFacts, ...]
    error: str | None = None
    cacheable: bool = True

    @property
    def kinds(self) -> frozenset[StatementKind]:
        return frozenset(s.kind for s in self.statements)

    @property
    def risks(self) -> frozenset[Risk]:
        out: set[Risk] = set()
        for s in self.statements:
            out |= s.risks
        return frozenset(out)
