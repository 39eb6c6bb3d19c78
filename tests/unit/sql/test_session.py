"""SqlSession: names qualified through search_path and the session's temporary tables, and
the SQL-level prepared statements, as the session's allowed statements change them.

``analyze`` looks, ``apply`` records (only what was allowed is applied).
"""

from __future__ import annotations

import pytest

from dbward.sql.analyze import analyze
from dbward.sql.facts import Analysis, Relation, Risk, StatementFacts, StatementKind
from dbward.sql.session import SqlSession


def run(session: SqlSession, sql: str) -> Analysis:
    """Analyse and apply, as the proxy does for an allowed statement."""
    analysis = session.analyze(sql)
    assert analysis.error is None, f"{sql!r} did not parse: {analysis.error}"
    session.apply(analysis)
    return analysis


def one(session: SqlSession, sql: str) -> StatementFacts:
    analysis = session.analyze(sql)
    assert analysis.error is None, f"{sql!r} did not parse: {analysis.error}"
    assert len(analysis.statements) == 1, analysis.statements
    return analysis.statements[0]


def reads(session: SqlSession, sql: str) -> tuple[Relation, ...]:
    return one(session, sql).reads


def public() -> SqlSession:
    return SqlSession(search_path=("public",))


# --------------------------------------------------------------------------- search_path


class TestSearchPath:
    def test_unqualified_names_take_the_first_schema(self) -> None:
        s = public()
        f = one(s, "SELECT * FROM orders JOIN customers ON customers.id = orders.customer_id")
        assert set(f.reads) == {Relation("orders", "public"), Relation("customers", "public")}

    def test_default_search_path_is_public(self) -> None:
        assert reads(SqlSession(), "SELECT * FROM orders") == (Relation("orders", "public"),)

    def test_qualified_names_are_kept(self) -> None:
        s = public()
        assert reads(s, "SELECT * FROM audit.log") == (Relation("log", "audit"),)

    def test_writes_are_qualified_too(self) -> None:
        s = public()
        f = one(s, "INSERT INTO archive SELECT * FROM sales.orders")
        assert f.writes == (Relation("archive", "public"),)
        assert f.reads == (Relation("orders", "sales"),)

    def test_ddl_targets_are_qualified(self) -> None:
        s = public()
        f = one(s, "DROP TABLE orders")
        assert Relation("orders", "public") in f.tables
        assert Relation("orders", None) not in f.tables

    def test_truncate_target_is_qualified(self) -> None:
        assert one(public(), "TRUNCATE orders").writes == (Relation("orders", "public"),)

    def test_another_first_schema(self) -> None:
        s = SqlSession(search_path=("app", "public"))
        assert reads(s, "SELECT * FROM orders") == (Relation("orders", "app"),)

    def test_dollar_user_is_skipped(self) -> None:
        s = SqlSession(search_path=("$user", "public"))
        assert reads(s, "SELECT * FROM orders") == (Relation("orders", "public"),)

    def test_set_search_path(self) -> None:
        s = public()
        run(s, "SET search_path TO a, b")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "a"),)
        assert reads(s, "SELECT * FROM public.t") == (Relation("t", "public"),)

    def test_set_search_path_with_equals_and_dollar_user(self) -> None:
        s = public()
        run(s, 'SET search_path = "$user", app')
        assert reads(s, "SELECT * FROM t") == (Relation("t", "app"),)

    def test_set_search_path_quoted_schema_keeps_its_case(self) -> None:
        s = public()
        run(s, 'SET search_path TO "Sales", public')
        assert reads(s, "SELECT * FROM t") == (Relation("t", "Sales"),)

    def test_set_search_path_unquoted_schema_is_folded(self) -> None:
        s = public()
        run(s, "SET search_path TO Sales")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "sales"),)

    def test_set_search_path_string_literal(self) -> None:
        s = public()
        run(s, "SET search_path TO 'app', 'public'")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "app"),)

    def test_set_session_and_local_search_path(self) -> None:
        s = public()
        run(s, "SET SESSION search_path TO app")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "app"),)

    def test_reset_search_path_goes_back_to_the_start(self) -> None:
        s = SqlSession(search_path=("app",))
        run(s, "SET search_path TO other")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "other"),)
        run(s, "RESET search_path")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "app"),)

    def test_set_search_path_to_default_goes_back_to_the_start(self) -> None:
        s = SqlSession(search_path=("app",))
        run(s, "SET search_path TO other")
        run(s, "SET search_path TO DEFAULT")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "app"),)

    def test_other_settings_leave_the_path_alone(self) -> None:
        s = SqlSession(search_path=("app",))
        run(s, "SET statement_timeout = 0")
        assert reads(s, "SELECT * FROM t") == (Relation("t", "app"),)

    def test_analyze_alone_changes_nothing(self) -> None:
        s = public()
        s.analyze("SET search_path TO elsewhere")  # looked at, never applied (e.g. denied)
        assert reads(s, "SELECT * FROM t") == (Relation("t", "public"),)

    def test_set_search_path_is_not_cacheable(self) -> None:
        assert public().analyze("SET search_path TO a").cacheable is False

    def test_a_set_earlier_in_the_same_string_applies_to_later_parts(self) -> None:
        s = public()
        analysis = s.analyze("SET search_path TO secret; SELECT * FROM t")
        assert analysis.statements[1].reads == (Relation("t", "secret"),)

    def test_set_config_search_path_is_followed(self) -> None:
        # the function spelling of SET search_path: a table rule on public.t must not be
        # dodged by moving the path
        s = public()
        run(s, "SELECT set_config('search_path', 'secret', false)")
        (t,) = reads(s, "SELECT * FROM t")
        assert t.name == "t"
        assert t.schema in ("secret", None)  # followed, or unknown; never the old public

    def test_columns_and_functions_are_left_as_they_are(self) -> None:
        f = one(public(), "SELECT lower(email) FROM customers")
        assert "lower" in f.functions


# --------------------------------------------------------------------------- temporary tables


class TestTemporaryTables:
    @pytest.mark.parametrize(
        "create",
        [
            "CREATE TEMP TABLE scratch (id int)",
            "CREATE TEMPORARY TABLE scratch (id int)",
            "CREATE LOCAL TEMP TABLE scratch (id int)",
            "CREATE TEMP TABLE IF NOT EXISTS scratch (id int)",
            "CREATE TEMPORARY TABLE scratch AS SELECT * FROM orders",
            "CREATE TEMP TABLE scratch AS SELECT 1 AS id WITH NO DATA",
            "SELECT * INTO TEMP scratch FROM orders",
            "SELECT * INTO TEMPORARY TABLE scratch FROM orders",
            "CREATE TABLE pg_temp.scratch (id int)",
        ],
    )
    def test_temp_tables_resolve_to_pg_temp(self, create: str) -> None:
        s = public()
        analysis = run(s, create)
        assert analysis.statements[0].creates_temp == ("scratch",)
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "pg_temp"),)
        f = one(s, "DELETE FROM scratch")
        assert f.writes == (Relation("scratch", "pg_temp"),)
        assert f.writes[0].temporary

    def test_the_create_statement_itself_names_pg_temp(self) -> None:
        f = one(public(), "CREATE TEMP TABLE scratch AS SELECT * FROM orders")
        assert Relation("orders", "public") in f.reads
        named = [r for r in f.tables if r.name == "scratch"]
        assert named
        assert all(r.schema == "pg_temp" for r in named)

    def test_a_permanent_table_is_not_temporary(self) -> None:
        s = public()
        analysis = run(s, "CREATE TABLE keep (id int)")
        assert analysis.statements[0].creates_temp == ()
        assert reads(s, "SELECT * FROM keep") == (Relation("keep", "public"),)

    def test_a_temp_table_shadows_the_search_path(self) -> None:
        s = SqlSession(search_path=("app", "public"))
        run(s, "CREATE TEMP TABLE orders (id int)")
        assert reads(s, "SELECT * FROM orders") == (Relation("orders", "pg_temp"),)
        assert reads(s, "SELECT * FROM app.orders") == (Relation("orders", "app"),)
        assert reads(s, "SELECT * FROM customers") == (Relation("customers", "app"),)

    def test_temp_tables_survive_a_search_path_change(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        run(s, "SET search_path TO other")
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "pg_temp"),)

    def test_temp_table_names_are_folded(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE Scratch (id int)")
        assert reads(s, "SELECT * FROM SCRATCH") == (Relation("scratch", "pg_temp"),)
        assert reads(s, 'SELECT * FROM "Scratch"') == (Relation("Scratch", "public"),)

    def test_drop_of_a_temp_table_names_pg_temp_then_forgets_it(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        drop = run(s, "DROP TABLE scratch")
        assert Relation("scratch", "pg_temp") in drop.statements[0].tables
        assert Relation("scratch", "public") not in drop.statements[0].tables
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "public"),)

    def test_drop_of_several_tables_forgets_only_the_temp_one(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        run(s, "CREATE TEMP TABLE other (id int)")
        run(s, "DROP TABLE IF EXISTS orders, scratch")
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "public"),)
        assert reads(s, "SELECT * FROM other") == (Relation("other", "pg_temp"),)

    def test_drop_of_a_qualified_permanent_table_keeps_the_temp_one(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        run(s, "DROP TABLE public.scratch")
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "pg_temp"),)

    def test_drop_of_pg_temp_qualified_name(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        run(s, "DROP TABLE pg_temp.scratch")
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "public"),)

    def test_a_denied_create_is_not_recorded(self) -> None:
        s = public()
        s.analyze("CREATE TEMP TABLE scratch (id int)")
        assert reads(s, "SELECT * FROM scratch") == (Relation("scratch", "public"),)

    def test_truncate_of_a_temp_table(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        f = one(s, "TRUNCATE scratch")
        assert f.writes == (Relation("scratch", "pg_temp"),)

    @pytest.mark.parametrize("discard", ["DISCARD TEMP", "DISCARD TEMPORARY", "DISCARD ALL"])
    def test_discard_forgets_temp_tables(self, discard: str) -> None:
        # otherwise `CREATE TEMP TABLE orders ...; DISCARD TEMP; DROP TABLE orders` would look
        # like a drop of a temporary table while it drops public.orders
        s = public()
        run(s, "CREATE TEMP TABLE orders (id int)")
        run(s, discard)
        assert reads(s, "SELECT * FROM orders") == (Relation("orders", "public"),)

    def test_a_temp_table_created_earlier_in_the_same_string(self) -> None:
        s = public()
        analysis = s.analyze("CREATE TEMP TABLE scratch (id int); INSERT INTO scratch VALUES (1)")
        assert analysis.statements[1].writes == (Relation("scratch", "pg_temp"),)


class TestNamesFromOtherStatements:
    """The session must not take a name from another statement of the same shape (the
    analysis cache is shared by all sessions)."""

    def test_a_qualified_name_is_not_taken_for_a_temp_table(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE orders (id int)")
        assert one(s, "DELETE FROM orders").writes == (Relation("orders", "pg_temp"),)
        f = one(s, "DELETE FROM public.orders")
        assert f.writes == (Relation("orders", "public"),)
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_another_sessions_temp_table_is_not_ours(self) -> None:
        a = public()
        run(a, "CREATE TEMP TABLE important (id int)")
        b = public()
        run(b, "CREATE TEMP TABLE whatever (id int)")
        f = one(b, "DROP TABLE important")  # b has no temp table "important": public's goes
        assert (f.tables, Risk.DESTRUCTIVE_DDL in f.risks) == (
            (Relation("important", "public"),),
            True,
        )
        assert reads(b, "SELECT * FROM whatever") == (Relation("whatever", "pg_temp"),)

    def test_an_aliased_table_keeps_its_name(self) -> None:
        s = public()
        one(s, "SELECT * FROM orders o WHERE o.id = 1")
        f = one(s, "SELECT * FROM salaries o WHERE o.id = 1")
        assert f.reads == (Relation("salaries", "public"),)

    def test_a_schema_is_not_taken_from_another_statement(self) -> None:
        s = public()
        one(s, "SELECT * FROM accounts")
        assert reads(s, "SELECT * FROM secret.accounts") == (Relation("accounts", "secret"),)


# --------------------------------------------------------------------------- PREPARE / EXECUTE


class TestPrepared:
    def test_prepare_then_execute(self) -> None:
        s = public()
        prep = run(s, "PREPARE purge AS DELETE FROM orders")
        p = prep.statements[0]
        assert (p.command, p.prepares) == ("PREPARE", "purge")
        assert p.writes == (Relation("orders", "public"),)
        f = one(s, "EXECUTE purge")
        assert f.command == "EXECUTE"
        assert f.executes == "purge"
        assert f.kind == StatementKind.WRITE
        assert f.writes == (Relation("orders", "public"),)
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks
        assert Risk.DYNAMIC_SQL not in f.risks

    def test_execute_with_parameters(self) -> None:
        s = public()
        run(s, "PREPARE q(int) AS SELECT * FROM orders WHERE id = $1")
        f = one(s, "EXECUTE q(42)")
        assert (f.command, f.kind, f.executes) == ("EXECUTE", StatementKind.READ, "q")
        assert f.reads == (Relation("orders", "public"),)
        assert f.risks == frozenset()

    def test_execute_of_a_bounded_update(self) -> None:
        s = public()
        run(s, "PREPARE u(int) AS UPDATE orders SET status = 'x' WHERE id = $1")
        f = one(s, "EXECUTE u(1)")
        assert f.where is True
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_execute_keeps_risks_of_functions(self) -> None:
        s = public()
        run(s, "PREPARE r AS SELECT pg_read_file('postgresql.conf')")
        assert Risk.SERVER_FILE_ACCESS in one(s, "EXECUTE r").risks

    def test_execute_of_an_unknown_name(self) -> None:
        s = public()
        f = one(s, "EXECUTE nope")
        assert f.command == "EXECUTE"
        assert f.executes == "nope"
        assert f.kind == StatementKind.UNKNOWN
        assert Risk.DYNAMIC_SQL in f.risks

    def test_execute_is_not_cacheable(self) -> None:
        s = public()
        run(s, "PREPARE q AS SELECT 1")
        assert s.analyze("EXECUTE q").cacheable is False

    def test_a_prepare_that_was_not_applied_is_unknown(self) -> None:
        s = public()
        s.analyze("PREPARE q AS SELECT 1")
        assert one(s, "EXECUTE q").kind == StatementKind.UNKNOWN

    def test_names_are_folded(self) -> None:
        s = public()
        run(s, "PREPARE MyQuery AS SELECT * FROM orders")
        assert one(s, "EXECUTE myquery").reads == (Relation("orders", "public"),)
        assert one(s, "EXECUTE MYQUERY").reads == (Relation("orders", "public"),)

    def test_deallocate(self) -> None:
        s = public()
        run(s, "PREPARE a AS SELECT 1")
        run(s, "PREPARE b AS DELETE FROM orders WHERE id = 1")
        analysis = run(s, "DEALLOCATE a")
        assert analysis.statements[0].deallocates == "a"
        assert one(s, "EXECUTE a").kind == StatementKind.UNKNOWN
        assert one(s, "EXECUTE b").kind == StatementKind.WRITE

    def test_deallocate_prepare(self) -> None:
        s = public()
        run(s, "PREPARE a AS SELECT 1")
        run(s, "DEALLOCATE PREPARE a")
        assert one(s, "EXECUTE a").kind == StatementKind.UNKNOWN

    def test_deallocate_all(self) -> None:
        s = public()
        run(s, "PREPARE a AS SELECT 1")
        run(s, "PREPARE b AS SELECT 2")
        analysis = run(s, "DEALLOCATE ALL")
        assert analysis.statements[0].deallocates == ""
        assert one(s, "EXECUTE a").kind == StatementKind.UNKNOWN
        assert one(s, "EXECUTE b").kind == StatementKind.UNKNOWN

    def test_discard_all_deallocates(self) -> None:
        s = public()
        run(s, "PREPARE a AS SELECT 1")
        run(s, "DISCARD ALL")
        assert one(s, "EXECUTE a").kind == StatementKind.UNKNOWN

    def test_prepare_of_a_temp_table(self) -> None:
        s = public()
        run(s, "CREATE TEMP TABLE scratch (id int)")
        run(s, "PREPARE wipe AS DELETE FROM scratch")
        assert one(s, "EXECUTE wipe").writes == (Relation("scratch", "pg_temp"),)

    def test_execute_resolves_with_the_current_search_path(self) -> None:
        # PostgreSQL re-parses a prepared statement when search_path has changed since
        # (PREPARE documentation, "new as of PostgreSQL 9.3")
        s = public()
        run(s, "PREPARE q AS SELECT * FROM t")
        run(s, "SET search_path TO other")
        assert one(s, "EXECUTE q").reads == (Relation("t", "other"),)

    def test_prepare_and_execute_in_the_same_string(self) -> None:
        s = public()
        analysis = s.analyze("PREPARE p AS DELETE FROM orders; EXECUTE p")
        f = analysis.statements[1]
        assert f.kind == StatementKind.WRITE
        assert f.writes == (Relation("orders", "public"),)
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_explain_analyze_execute_runs_the_prepared_statement(self) -> None:
        s = public()
        run(s, "PREPARE purge AS DELETE FROM orders")
        f = one(s, "EXPLAIN ANALYZE EXECUTE purge")
        assert f.kind == StatementKind.WRITE
        assert f.writes == (Relation("orders", "public"),)
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_explain_analyze_execute_keeps_the_explain_command(self) -> None:
        s = public()
        run(s, "PREPARE purge AS DELETE FROM orders")
        assert one(s, "EXPLAIN ANALYZE EXECUTE purge").command == "EXPLAIN ANALYZE"

    def test_plain_explain_execute_is_a_read(self) -> None:
        s = public()
        run(s, "PREPARE purge AS DELETE FROM orders")
        f = one(s, "EXPLAIN EXECUTE purge")
        assert f.kind == StatementKind.READ
        assert f.writes == ()
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_explain_analyze_execute_resolves_each_name(self) -> None:
        s = public()
        run(s, "PREPARE harmless AS SELECT 1")
        run(s, "PREPARE purge AS DELETE FROM orders")
        assert Risk.UNBOUNDED_WRITE not in one(s, "EXPLAIN ANALYZE EXECUTE harmless").risks
        assert Risk.UNBOUNDED_WRITE in one(s, "EXPLAIN ANALYZE EXECUTE purge").risks
        f = one(s, "EXPLAIN ANALYZE EXECUTE nope")
        assert f.kind == StatementKind.UNKNOWN
        assert Risk.DYNAMIC_SQL in f.risks

    def test_create_table_as_execute_runs_the_prepared_statement(self) -> None:
        s = public()
        run(s, "PREPARE r AS SELECT pg_read_file('postgresql.conf')")
        f = one(s, "CREATE TABLE loot AS EXECUTE r")
        assert Risk.SERVER_FILE_ACCESS in f.risks

    def test_create_table_as_execute_of_an_unknown_name(self) -> None:
        f = one(public(), "CREATE TABLE loot AS EXECUTE nope")
        assert Risk.DYNAMIC_SQL in f.risks

    def test_a_re_prepared_name_takes_the_new_statement(self) -> None:
        s = public()
        run(s, "PREPARE p AS SELECT 1")
        run(s, "DEALLOCATE p")
        run(s, "PREPARE p AS DELETE FROM orders")
        f = one(s, "EXECUTE p")
        assert f.kind == StatementKind.WRITE
        assert Risk.UNBOUNDED_WRITE in f.risks


# --------------------------------------------------------------------------- misc


def test_an_unparsable_string_through_the_session() -> None:
    s = public()
    analysis = s.analyze("SELEC * FROM orders")
    assert analysis.error
    assert analysis.statements == ()
    s.apply(analysis)  # nothing to record, no failure
    assert reads(s, "SELECT * FROM orders") == (Relation("orders", "public"),)


def test_each_session_has_its_own_state() -> None:
    a, b = public(), public()
    run(a, "SET search_path TO app")
    run(a, "CREATE TEMP TABLE scratch (id int)")
    run(a, "PREPARE p AS SELECT 1")
    assert reads(b, "SELECT * FROM t") == (Relation("t", "public"),)
    assert reads(b, "SELECT * FROM scratch") == (Relation("scratch", "public"),)
    assert one(b, "EXECUTE p").kind == StatementKind.UNKNOWN


def test_the_session_agrees_with_analyze_apart_from_names() -> None:
    text = "UPDATE orders o SET status = 'x' FROM customers c WHERE c.id = o.customer_id"
    plain = analyze(text).statements[0]
    qualified = one(public(), text)
    assert (qualified.command, qualified.kind, qualified.where, qualified.risks) == (
        plain.command,
        plain.kind,
        plain.where,
        plain.risks,
    )
    assert [r.name for r in qualified.writes] == [r.name for r in plain.writes]
    assert all(r.schema == "public" for r in qualified.tables)
