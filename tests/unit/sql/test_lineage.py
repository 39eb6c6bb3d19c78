"""lineage(): which tables and columns a statement read and wrote, as the audit trail keeps it.

Names as the statement wrote them (the session qualifies them before the proxy
records lineage); ``*`` is every column.
"""

from __future__ import annotations

import pytest

from dbward.sql.analyze import analyze
from dbward.sql.lineage import Lineage, cached_lineage, lineage


def of(sql: str) -> Lineage:
    analysis = analyze(sql)
    assert analysis.error is None, f"{sql!r} did not parse: {analysis.error}"
    return lineage(analysis)


CASES = [
    # SELECT
    ("SELECT name, email FROM people", {"read": {"people": ["name", "email"]}}),
    (
        "SELECT p.name FROM public.people p WHERE p.id = 1",
        {"read": {"public.people": ["name", "id"]}},
    ),
    ("SELECT people.email FROM people", {"read": {"people": ["email"]}}),
    ("SELECT * FROM people", {"read": {"people": ["*"]}}),
    ("SELECT p.* FROM s.people p", {"read": {"s.people": ["*"]}}),
    (
        "SELECT * FROM public.people WHERE email LIKE '%x'",
        {"read": {"public.people": ["*", "email"]}},
    ),
    ("SELECT count(*) FROM people", {"read": {"people": []}}),  # the table, no column
    ("SELECT 1", {}),
    # JOINs: qualified columns go to their table; unqualified ones to every table read
    (
        "SELECT p.name, o.total FROM people p JOIN orders o ON o.person_id = p.id",
        {"read": {"people": ["name", "id"], "orders": ["total", "person_id"]}},
    ),
    (
        "SELECT name, total FROM people JOIN orders USING (id)",
        {"read": {"people": ["name", "total"], "orders": ["name", "total"]}},
    ),
    (
        "SELECT email FROM people WHERE id IN (SELECT person_id FROM orders)",
        {
            "read": {
                "people": ["email", "id", "person_id"],
                "orders": ["email", "id", "person_id"],
            }
        },
    ),
    # UPDATE
    ("UPDATE public.people SET email = 'x'", {"write": {"public.people": ["email"]}}),
    (
        "UPDATE people SET email = other.email FROM other WHERE other.flag",
        {"read": {"other": ["email", "flag"]}, "write": {"people": ["email"]}},
    ),
    # DELETE: every column of the rows removed; the WHERE columns read
    ("DELETE FROM people", {"write": {"people": ["*"]}}),
    ("DELETE FROM people WHERE id = 1", {"read": {"people": ["id"]}, "write": {"people": ["*"]}}),
    (
        "DELETE FROM people WHERE id = 1 RETURNING email",
        {"read": {"people": ["id", "email"]}, "write": {"people": ["*"]}},
    ),
    (
        "DELETE FROM orders USING people WHERE orders.person_id = people.id AND people.email = 'x'",
        {"read": {"people": ["id", "email"], "orders": ["person_id"]}, "write": {"orders": ["*"]}},
    ),
    # INSERT
    (
        "INSERT INTO people (name, email) VALUES ('a', 'b')",
        {"write": {"people": ["name", "email"]}},
    ),
    ("INSERT INTO people VALUES ('a', 'b')", {"write": {"people": ["*"]}}),
    (
        "INSERT INTO archive (name) SELECT name FROM people WHERE active",
        {"read": {"people": ["name", "active"]}, "write": {"archive": ["name"]}},
    ),
    (
        "INSERT INTO archive SELECT * FROM people",
        {"read": {"people": ["*"]}, "write": {"archive": ["*"]}},
    ),
    (
        "INSERT INTO public.t SELECT email FROM public.people",
        {"read": {"public.people": ["email"]}, "write": {"public.t": ["*"]}},
    ),
    # rows removed wholesale
    ("TRUNCATE people", {"write": {"people": ["*"]}}),
    ("TRUNCATE public.people, orders", {"write": {"public.people": ["*"], "orders": ["*"]}}),
    ("DROP TABLE people", {"write": {"people": ["*"]}}),
    ("DROP TABLE IF EXISTS s.t, orders", {"write": {"s.t": ["*"], "orders": ["*"]}}),
    # COPY
    ("COPY people TO STDOUT", {"read": {"people": ["*"]}}),
    ("COPY public.people TO STDOUT WITH (FORMAT csv)", {"read": {"public.people": ["*"]}}),
    ("COPY (SELECT name FROM people) TO STDOUT", {"read": {"people": ["name"]}}),
    ("COPY (SELECT * FROM people) TO STDOUT", {"read": {"people": ["*"]}}),
    ("COPY people FROM STDIN", {"write": {"people": ["*"]}}),
    # statements that touch no table
    ("BEGIN", {}),
    ("SET search_path = app", {}),
    # several statements in one string: merged, each table once
    (
        "SELECT name FROM people; DELETE FROM orders WHERE id = 2",
        {"read": {"people": ["name"], "orders": ["id"]}, "write": {"orders": ["*"]}},
    ),
    ("SELECT 1; SELECT 2", {}),
    ("INSERT INTO t (a) VALUES (1); UPDATE t SET a = 2", {"write": {"t": ["a"]}}),
    ("UPDATE t SET a = 1; DELETE FROM t", {"write": {"t": ["a", "*"]}}),
    ("SELECT a FROM t; DROP TABLE t", {"read": {"t": ["a"]}, "write": {"t": ["*"]}}),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[sql for sql, _ in CASES])
def test_lineage(sql: str, expected: Lineage) -> None:
    assert of(sql) == expected


def test_columns_keep_the_order_they_were_named_in() -> None:
    assert list(of("SELECT c, a, b, a FROM t")["read"]["t"]) == ["c", "a", "b"]


def test_a_statement_that_does_not_parse_touches_nothing() -> None:
    assert lineage(analyze("SELEC name FROM people")) == {}


def test_cached_lineage_gives_the_same_answer_once_per_analysis() -> None:
    analysis = analyze("SELECT name FROM people")
    first = cached_lineage(analysis)
    assert first == {"read": {"people": ["name"]}}
    assert cached_lineage(analysis) is first


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "INSERT INTO t (a) VALUES (1); INSERT INTO t VALUES (2)",
            {"write": {"t": ["a", "*"]}},
        ),
        ("SELECT a FROM t; COPY t TO STDOUT", {"read": {"t": ["a", "*"]}}),
    ],
)
def test_every_column_of_a_later_part_is_kept(sql: str, expected: Lineage) -> None:
    assert of(sql) == expected


# Columns an UPDATE or INSERT only reads (WHERE, right-hand sides, RETURNING) are read.


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "UPDATE people SET email = 'x' WHERE ssn = '123'",
            {"read": {"people": ["ssn"]}, "write": {"people": ["email"]}},
        ),
        (
            "INSERT INTO people (name) VALUES ('a') RETURNING id",
            {"read": {"people": ["id"]}, "write": {"people": ["name"]}},
        ),
    ],
)
def test_columns_an_update_or_insert_only_reads_are_read(sql: str, expected: Lineage) -> None:
    assert of(sql) == expected
