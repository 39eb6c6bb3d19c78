"""The few SQL pieces that differ between the audit stores (SQLite and PostgreSQL).

Queries are written once, with ``?`` placeholders; a store converts them for
its driver. What differs is reaching into a record's ``data`` (JSON text in
SQLite, ``jsonb`` in PostgreSQL) and a case-insensitive substring test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str

    def text(self, column: str, key: str) -> str:
        """``column.key`` as text (NULL when absent)."""
        if self.name == "postgres":
            return f"({column}->>'{key}')"
        return f"json_extract({column}, '$.{key}')"

    def number(self, column: str, key: str) -> str:
        if self.name == "postgres":
            return f"(({column}->>'{key}')::bigint)"
        return f"json_extract({column}, '$.{key}')"

    def has_value(self, column: str, key: str) -> str:
        """``column.key`` (an array, or an object's values) holds the next parameter."""
        if self.name == "postgres":
            return (
                f"(EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof("
                f"{column}->'{key}') = 'array' THEN {column}->'{key}' END) v WHERE v = ?)"
                f" OR EXISTS (SELECT 1 FROM jsonb_each_text(CASE WHEN jsonb_typeof("
                f"{column}->'{key}') = 'object' THEN {column}->'{key}' END) o WHERE o.value = ?))"
            )
        return f"EXISTS (SELECT 1 FROM json_each({column}, '$.{key}') e WHERE e.value = ?)"

    def has_value_params(self, value: object) -> list[object]:
        return [value, value] if self.name == "postgres" else [value]

    def names_table(self, column: str) -> str:
        """``column`` (a qualified table name) is the table given as the next three
        parameters (its name, qualified or not): ``public.people`` or ``people``. No
        pattern matching, so ``_`` and ``%`` in a name are plain characters."""
        if self.name == "postgres":
            return f"({column} = ? OR right({column}, length(?) + 1) = '.' || ?)"
        return f"({column} = ? OR substr({column}, -(length(?) + 1)) = '.' || ?)"

    def contains(self, expression: str) -> str:
        """``expression`` holds the next parameter, ignoring case."""
        if self.name == "postgres":
            return f"strpos(lower({expression}), lower(?)) > 0"
        return f"instr(lower({expression}), lower(?)) > 0"


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgres")
