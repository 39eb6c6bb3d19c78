"""AnalysisCache: statements of the same shape share one analysis, bounded, least recently used out.

The invariant every test leans on: whatever the cache saw before,
``cache.analyze(text)`` has the facts of ``analyze(text)``; and its ``text`` is the text asked
about (test_a_hit_carries_the_text_asked_about).
"""

from __future__ import annotations

import pytest

from dbward.sql.analyze import analyze
from dbward.sql.cache import AnalysisCache
from dbward.sql.facts import Analysis, Relation


def facts_of(analysis: Analysis) -> tuple[object, ...]:
    return (analysis.statements, analysis.error, analysis.cacheable, analysis.shape)


def same_facts(a: Analysis, b: Analysis) -> bool:
    return facts_of(a) == facts_of(b)


SAME_SHAPE = [
    ("SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 2"),
    # The shape is the text with constants replaced: other spacing, case or comments
    # make another shape (a miss, never a wrong hit).
    ("SELECT * FROM t WHERE name = 'a'", "SELECT * FROM t WHERE name = 'something else'"),
    ("UPDATE t SET a = 1 WHERE id = 2", "UPDATE t SET a = 3 WHERE id = 4"),
    ("DELETE FROM t WHERE id = 1", "DELETE FROM t WHERE id = 1000"),
    ("INSERT INTO t (a, b) VALUES (1, 'x')", "INSERT INTO t (a, b) VALUES (2, 'y')"),
    ("SELECT pg_read_file('a')", "SELECT pg_read_file('b')"),
    ("SELECT 1; SELECT 2", "SELECT 3; SELECT 4"),
    ("DELETE FROM t WHERE 1 = 1", "DELETE FROM t WHERE 2 = 3"),
]


def test_a_new_cache_is_empty() -> None:
    cache = AnalysisCache(capacity=8)
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (0, 0)


def test_the_first_analysis_is_a_miss_and_the_same_text_again_a_hit() -> None:
    cache = AnalysisCache(capacity=8)
    text = "SELECT * FROM t WHERE id = 1"
    first = cache.analyze(text)
    assert isinstance(first, Analysis)
    assert first == analyze(text)
    assert (cache.hits, cache.misses) == (0, 1)
    assert len(cache) == 1
    again = cache.analyze(text)
    assert again == first
    assert (cache.hits, cache.misses) == (1, 1)
    assert len(cache) == 1


@pytest.mark.parametrize(("first", "second"), SAME_SHAPE)
def test_the_same_shape_with_other_literals_is_a_hit(first: str, second: str) -> None:
    cache = AnalysisCache(capacity=8)
    a = cache.analyze(first)
    b = cache.analyze(second)
    assert (cache.hits, cache.misses) == (1, 1)
    assert b.shape == a.shape
    assert b is a  # the very same analysis: callers cache their own results by it
    assert b.statements == a.statements
    assert same_facts(b, analyze(second))


@pytest.mark.parametrize(("first", "second"), SAME_SHAPE)
def test_a_shared_analysis_holds_no_literal_of_either_text(first: str, second: str) -> None:
    # One analysis serves every text of a shape, so it must not carry the literal values
    # of the text that created it (they would reach whoever logged it for another text).
    cache = AnalysisCache(capacity=8)
    a = cache.analyze(first)
    b = cache.analyze(second)
    assert b is a
    assert "$" in b.shape or b.shape == first
    assert b == analyze(second)


def test_a_different_shape_is_a_miss() -> None:
    cache = AnalysisCache(capacity=8)
    a = cache.analyze("SELECT * FROM t WHERE id = 1")
    b = cache.analyze("SELECT * FROM u WHERE id = 1")
    c = cache.analyze("SELECT * FROM t WHERE other = 1")
    d = cache.analyze("DELETE FROM t WHERE id = 1")
    assert (cache.hits, cache.misses) == (0, 4)
    assert len(cache) == 4
    assert len({a.shape, b.shape, c.shape, d.shape}) == 4
    assert b == analyze("SELECT * FROM u WHERE id = 1")
    assert d.statements[0].command == "DELETE"


# Pairs PostgreSQL's fingerprint does not tell apart (it ignores constants), where the facts
# do or may differ: the second must never get the first one's facts.
LOOK_ALIKES = [
    # names the fingerprint leaves out: a relation with an alias, schemas, temp table names
    ("SELECT * FROM orders o WHERE o.id = 1", "SELECT * FROM salaries o WHERE o.id = 1"),
    ("DELETE FROM orders o WHERE o.id = 1", "DELETE FROM salaries o WHERE o.id = 1"),
    ("UPDATE orders o SET a = 1 WHERE o.id = 1", "UPDATE salaries o SET a = 1 WHERE o.id = 1"),
    ("SELECT * FROM t1 x JOIN t2 y ON x.id = y.id", "SELECT * FROM t3 x JOIN t4 y ON x.id = y.id"),
    ("SELECT * FROM public.t", "SELECT * FROM secret.t"),
    ("SELECT * FROM t", "SELECT * FROM secret.t"),
    ("DELETE FROM orders", "DELETE FROM public.orders"),
    ("INSERT INTO public.t VALUES (1)", "INSERT INTO audit.t VALUES (1)"),
    ("CREATE TEMP TABLE scratch (id int)", "CREATE TEMP TABLE orders (id int)"),
    ("CREATE TEMP TABLE a AS SELECT * FROM orders", "CREATE TEMP TABLE b AS SELECT * FROM orders"),
    ("SELECT * INTO TEMP a FROM orders", "SELECT * INTO TEMP b FROM orders"),
    ("ALTER ROLE a SUPERUSER", "ALTER ROLE b SUPERUSER"),
    # literal values that carry facts
    ("SET search_path TO a", "SET search_path TO b"),
    ("SET search_path TO a", 'SET search_path TO "$user", a'),
    ("SET search_path TO a; SELECT * FROM t", "SET search_path TO b; SELECT * FROM t"),
    ("SET statement_timeout TO 1", "SET statement_timeout TO 5"),
    ("SET ROLE reader", "SET ROLE admin"),
    ("SET SESSION AUTHORIZATION reader", "SET SESSION AUTHORIZATION admin"),
    ("EXECUTE a", "EXECUTE b"),
    ("EXECUTE a(1)", "EXECUTE b(2)"),
    ("EXPLAIN ANALYZE EXECUTE a", "EXPLAIN ANALYZE EXECUTE b"),
    ("CREATE TABLE x AS EXECUTE a", "CREATE TABLE x AS EXECUTE b"),
    ("PREPARE a AS SELECT 1", "PREPARE b AS SELECT 1"),
    ("DEALLOCATE a", "DEALLOCATE b"),
    (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'",
    ),
    (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$SELECT 1$$",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$SELECT pg_read_file('x')$$",
    ),
    (
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS 'DELETE FROM t'",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'",
    ),
    (
        "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
        "CREATE PROCEDURE p() LANGUAGE sql AS 'TRUNCATE t'",
    ),
    (
        "SELECT set_config('statement_timeout', '1', false)",
        "SELECT set_config('search_path', 'x', false)",
    ),
    ("SELECT set_config('search_path', 'a', false)", "SELECT set_config('role', 'a', false)"),
    ("SELECT nextval('a')", "SELECT nextval('b')"),
    ("DELETE FROM t WHERE id = 5 OR 1 = 1", "DELETE FROM t WHERE id = 5 OR 1 = 0"),
    ("DELETE FROM t WHERE 'a' = 'a'", "DELETE FROM t WHERE 'a' = 'b'"),
    ("DELETE FROM t WHERE true", "DELETE FROM t WHERE false"),
    ("SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = $1"),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", "EXPLAIN (ANALYZE true) DELETE FROM t"),
    (
        "SELECT * FROM dblink('c', 'SELECT 1') AS x(a int)",
        "SELECT * FROM dblink('c', 'x') AS x(a int)",
    ),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_look_alikes_get_their_own_facts(first: str, second: str, reverse: bool) -> None:
    if reverse:
        first, second = second, first
    cache = AnalysisCache(capacity=8)
    assert same_facts(cache.analyze(first), analyze(first))
    assert same_facts(cache.analyze(second), analyze(second))
    # and the first is still right afterwards
    assert same_facts(cache.analyze(first), analyze(first))


def test_an_alias_does_not_hide_the_table() -> None:
    # PostgreSQL's fingerprint drops the table name of an aliased relation
    cache = AnalysisCache(capacity=8)
    cache.analyze("SELECT * FROM orders o WHERE o.id = 1")
    b = cache.analyze("SELECT * FROM salaries o WHERE o.id = 2")
    assert b.statements[0].reads == (Relation("salaries"),)


def test_the_schema_is_part_of_the_shape() -> None:
    # PostgreSQL's fingerprint drops schema names
    cache = AnalysisCache(capacity=8)
    cache.analyze("SELECT * FROM public.accounts")
    b = cache.analyze("SELECT * FROM secret.accounts")
    assert b.statements[0].reads == (Relation("accounts", "secret"),)
    cache.analyze("DELETE FROM accounts")
    c = cache.analyze("DELETE FROM public.accounts")
    assert c.statements[0].writes == (Relation("accounts", "public"),)


def test_temp_table_names_are_part_of_the_shape() -> None:
    # PostgreSQL's fingerprint drops the names of temporary tables
    cache = AnalysisCache(capacity=8)
    cache.analyze("CREATE TEMP TABLE important (id int)")
    b = cache.analyze("CREATE TEMP TABLE whatever (id int)")
    assert b.statements[0].creates_temp == ("whatever",)


def test_set_search_path_is_not_cacheable() -> None:
    cache = AnalysisCache(capacity=8)
    a = cache.analyze("SET search_path TO a")
    b = cache.analyze("SET search_path TO b")
    assert a.cacheable is False
    assert b.cacheable is False
    assert b.statements == analyze("SET search_path TO b").statements
    assert b.statements != a.statements


def test_execute_is_not_served_from_another_names_entry() -> None:
    cache = AnalysisCache(capacity=8)
    a = cache.analyze("EXECUTE first_one")
    b = cache.analyze("EXECUTE second_one")
    assert a.cacheable is False
    assert b.cacheable is False
    assert [s.executes for s in a.statements] == ["first_one"]
    assert [s.executes for s in b.statements] == ["second_one"]


def test_a_function_body_is_not_served_from_another_bodys_entry() -> None:
    cache = AnalysisCache(capacity=8)
    harmless = "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SELECT 1'"
    harmful = "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'"
    cache.analyze(harmless)
    served = cache.analyze(harmful)
    assert same_facts(served, analyze(harmful))
    assert served.risks == analyze(harmful).risks


def test_prepare_names_are_not_mixed_up() -> None:
    cache = AnalysisCache(capacity=8)
    cache.analyze("PREPARE a AS SELECT 1")
    b = cache.analyze("PREPARE b AS SELECT 1")
    assert [s.prepares for s in b.statements] == ["b"]


def test_deallocate_names_are_not_mixed_up() -> None:
    cache = AnalysisCache(capacity=8)
    cache.analyze("DEALLOCATE a")
    b = cache.analyze("DEALLOCATE b")
    assert [s.deallocates for s in b.statements] == ["b"]


@pytest.mark.parametrize(
    ("primed", "text"),
    [
        ("SELECT 1", "SELEC 1"),
        ("SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 1 1"),
        ("SELEC 1", "SELEC 1"),
        ("SELEC 1", "SELECT 1"),
    ],
)
def test_unparsable_strings(primed: str, text: str) -> None:
    cache = AnalysisCache(capacity=8)
    cache.analyze(primed)
    result = cache.analyze(text)
    assert same_facts(result, analyze(text))
    assert bool(result.error) == bool(analyze(text).error)


def test_an_unparsable_string_stays_an_error() -> None:
    cache = AnalysisCache(capacity=8)
    for _ in range(3):
        result = cache.analyze("DELETE FROM")
        assert result.error
        assert result.statements == ()


# --------------------------------------------------------------------------- bounded, LRU


def shape(n: int) -> str:
    return f"SELECT * FROM table_{n} WHERE id = 1"


def test_capacity_is_respected() -> None:
    cache = AnalysisCache(capacity=3)
    for n in range(10):
        cache.analyze(shape(n))
        assert len(cache) <= 3
    assert len(cache) == 3
    assert (cache.hits, cache.misses) == (0, 10)


def test_the_most_recent_entries_are_kept() -> None:
    cache = AnalysisCache(capacity=3)
    for n in range(5):
        cache.analyze(shape(n))
    for n in (2, 3, 4):
        cache.analyze(shape(n).replace("= 1", "= 2"))
    assert (cache.hits, cache.misses) == (3, 5)


def test_the_least_recently_used_entry_is_evicted() -> None:
    cache = AnalysisCache(capacity=2)
    a, b, c = shape(1), shape(2), shape(3)

    def step(text: str) -> str:
        hits, misses = cache.hits, cache.misses
        result = cache.analyze(text)
        assert same_facts(result, analyze(text))
        assert (cache.hits - hits) + (cache.misses - misses) == 1
        return "hit" if cache.hits > hits else "miss"

    assert step(a) == "miss"  # [a]
    assert step(b) == "miss"  # [a, b]
    assert step(a.replace("= 1", "= 7")) == "hit"  # a is now the most recent: [b, a]
    assert step(c) == "miss"  # b goes: [a, c]
    assert len(cache) == 2
    assert step(a) == "hit"  # [c, a]
    assert step(b) == "miss"  # c goes: [a, b]
    assert step(c) == "miss"  # a goes: [b, c]
    assert step(b) == "hit"
    assert len(cache) == 2


def test_capacity_one() -> None:
    cache = AnalysisCache(capacity=1)
    cache.analyze(shape(1))
    cache.analyze(shape(1))
    cache.analyze(shape(2))
    cache.analyze(shape(1))
    assert (cache.hits, cache.misses) == (1, 3)
    assert len(cache) == 1


def test_many_different_statements_stay_correct() -> None:
    cache = AnalysisCache(capacity=4)
    texts = [
        "SELECT * FROM a",
        "DELETE FROM a",
        "DELETE FROM a WHERE id = 1",
        "UPDATE a SET x = 1 WHERE 1 = 1",
        "TRUNCATE a",
        "SET search_path TO x",
        "EXECUTE p",
        "SELECT pg_terminate_backend(1)",
        "COPY a TO STDOUT",
        "COPY a FROM STDIN",
    ]
    for _ in range(3):
        for text in texts:
            assert same_facts(cache.analyze(text), analyze(text)), text
            assert len(cache) <= 4
