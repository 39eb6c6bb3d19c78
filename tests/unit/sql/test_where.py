"""The effective-WHERE fact: can the WHERE clause of an UPDATE/DELETE limit the rows?

A missing WHERE, a constant one, a self-comparison, ``x OR NOT x`` and an OR
with a constant branch count as none (``where`` False, risk unbounded-write).
"""

from __future__ import annotations

import pytest

from dbward.sql.analyze import analyze
from dbward.sql.facts import Risk, StatementFacts


def facts(sql: str) -> StatementFacts:
    analysis = analyze(sql)
    assert analysis.error is None, f"{sql!r} did not parse: {analysis.error}"
    assert len(analysis.statements) == 1, analysis.statements
    return analysis.statements[0]


def dml(predicate: str | None) -> list[str]:
    """A DELETE and an UPDATE with the given WHERE clause (None: none)."""
    where = "" if predicate is None else f" WHERE {predicate}"
    return [f"DELETE FROM t{where}", f"UPDATE t SET a = 1{where}"]


EFFECTIVE = [
    "id = 5",
    "id <> 5",
    "id > 0",
    "id BETWEEN 1 AND 10",
    "id IN (1, 2, 3)",
    "id = ANY($1)",
    "id = $1",
    "$1 = id",
    "id = $1 AND tenant = $2",
    "name LIKE 'a%'",
    "deleted_at IS NULL",
    "archived",
    "NOT archived",
    "archived = true",
    "a = b",
    "t.a = t.b",
    "lower(email) = 'x'",
    "coalesce(a, 0) = 1",
    "(id = 5)",
    "NOT (id = 5)",
    "id = 5 OR id = 6",
    "id = 5 AND name = 'x'",
    "1=1 AND id = 5",
    "id = 5 AND true",
    "true AND id = 5",
    "id = id AND name = 'x'",
    "id = 5 OR (name = 'x' AND 1 = 1)",
    "id IN (SELECT id FROM other)",
    "id IN (SELECT id FROM other WHERE flag)",
    "EXISTS (SELECT 1 FROM other o WHERE o.id = t.id)",
    "NOT EXISTS (SELECT 1 FROM other o WHERE o.id = t.id)",
    "id = (SELECT max(id) FROM t)",
    "created < now() - interval '30 days'",
    "CASE WHEN id > 5 THEN true ELSE false END",
    "CURRENT OF cur",
]


@pytest.mark.parametrize("predicate", EFFECTIVE)
def test_effective_where(predicate: str) -> None:
    for sql in dml(predicate):
        f = facts(sql)
        assert f.where is True, sql
        assert Risk.UNBOUNDED_WRITE not in f.risks, sql


NOT_EFFECTIVE = [
    None,
    "true",
    "TRUE",
    "'t'::boolean",
    "NOT false",
    "(true)",
    "true AND true",
    "1=1",
    "1 = 1",
    "(1 = 1)",
    "1=0",
    "1 < 2",
    "'a'='a'",
    "'a' = 'b'",
    "NULL IS NULL",
    "1=1 AND 2=2",
    "id = id",
    "t.id = t.id",
    "t.id = id",
    "id = id AND name = name",
    "archived OR NOT archived",
    "NOT archived OR archived",
    "id = 5 OR NOT id = 5",
    "id = 5 OR 1=1",
    "1=1 OR id = 5",
    "id = 5 OR true",
    "id = 5 OR id = 6 OR 1 = 1",
    "(id = 5 OR 1 = 1) AND 2 = 2",
    "id = 5 OR id = id",
    "id >= id",
    "id IS NOT DISTINCT FROM id",
    "(a, b) = (a, b)",
    "coalesce(id, 0) = coalesce(id, 0)",
    "'a' LIKE 'a'",
    "1 IN (1, 2)",
    "id = 5 OR NOT false",
    # a parameter is one value for the whole statement: without a column it is a constant
    "$1",
    "$1 = $2",
    "id = 5 OR $1",
]


@pytest.mark.parametrize("predicate", NOT_EFFECTIVE)
def test_no_effective_where(predicate: str | None) -> None:
    for sql in dml(predicate):
        f = facts(sql)
        assert f.where is False, sql
        assert Risk.UNBOUNDED_WRITE in f.risks, sql


def test_an_or_with_a_constant_branch_has_the_same_fact_whatever_the_constant() -> None:
    # both spellings share a fingerprint, so a cache must be able to hand one's facts to the other
    assert facts("DELETE FROM t WHERE id = 5 OR 1 = 1").where is False
    assert facts("DELETE FROM t WHERE id = 5 OR 1 = 0").where is False


def test_where_of_an_aliased_target() -> None:
    assert facts("DELETE FROM t AS x WHERE x.id = 5").where is True
    assert facts("DELETE FROM t AS x WHERE x.id = x.id").where is False
    assert facts("UPDATE t x SET a = 1 WHERE x.a = x.b").where is True


def test_a_join_condition_limits_the_rows() -> None:
    f = facts("UPDATE t SET a = o.a FROM other o WHERE o.id = t.id")
    assert f.where is True
    f = facts("DELETE FROM t USING other o WHERE o.id = t.id")
    assert f.where is True


def test_update_from_without_where() -> None:
    f = facts("UPDATE t SET a = o.a FROM other o")
    assert f.where is False
    assert Risk.UNBOUNDED_WRITE in f.risks


def test_returning_does_not_count_as_a_where() -> None:
    assert facts("DELETE FROM t RETURNING *").where is False


@pytest.mark.parametrize(
    "predicate",
    [
        "EXISTS (SELECT 1)",
        "(SELECT true)",
        "true AND EXISTS (SELECT 1 WHERE 1 = 1)",
    ],
)
def test_a_subquery_without_any_column_is_a_constant(predicate: str) -> None:
    # beyond the documented list: these mention no column at all, so they select all rows or
    # none, like WHERE true / WHERE 1=0
    for sql in dml(predicate):
        assert facts(sql).where is False, sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t",
        "SELECT * FROM t WHERE id = 1",
        "SELECT * FROM t WHERE true",
        "INSERT INTO t (a) VALUES (1)",
        "INSERT INTO t SELECT * FROM other WHERE 1 = 1",
        "MERGE INTO t USING other o ON t.id = o.id WHEN MATCHED THEN DELETE",
        "TRUNCATE t",
        "COPY t FROM STDIN",
        "EXPLAIN DELETE FROM t",
        "CREATE TABLE t (id int)",
        "SET work_mem = '1MB'",
    ],
)
def test_where_is_only_set_for_update_and_delete(sql: str) -> None:
    assert facts(sql).where is None


def test_where_inside_explain_analyze() -> None:
    assert facts("EXPLAIN ANALYZE DELETE FROM t WHERE 1 = 1").where is False
    assert facts("EXPLAIN ANALYZE DELETE FROM t WHERE id = 1").where is True


def test_where_inside_a_writing_cte() -> None:
    f = facts("WITH d AS (DELETE FROM t WHERE 1 = 1 RETURNING *) SELECT * FROM d")
    assert f.where is False
    assert Risk.UNBOUNDED_WRITE in f.risks
    f = facts("WITH d AS (DELETE FROM t WHERE id = $1 RETURNING *) SELECT * FROM d")
    assert f.where is True
    assert Risk.UNBOUNDED_WRITE not in f.risks


def test_where_of_a_prepared_statement() -> None:
    f = facts("PREPARE p(int) AS DELETE FROM t WHERE id = $1")
    assert f.where is True
    f = facts("PREPARE p AS DELETE FROM t WHERE id = id")
    assert f.where is False
    assert Risk.UNBOUNDED_WRITE in f.risks


def test_each_part_of_a_multi_statement_string_has_its_own_where() -> None:
    analysis = analyze("DELETE FROM t WHERE id = 1; DELETE FROM t; UPDATE t SET a = 1 WHERE 1=1")
    assert [s.where for s in analysis.statements] == [True, False, False]
