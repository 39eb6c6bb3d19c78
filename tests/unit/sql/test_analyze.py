"""analyze(): the facts policy decides on, derived from PostgreSQL's own parse tree.

Names as the statement wrote them (``Relation.schema`` None when unqualified);
qualification through ``search_path`` is SqlSession's job (test_session.py).
The effective-WHERE rules have their own file (test_where.py).
"""

from __future__ import annotations

import dataclasses

import pytest

from dbward.sql.analyze import analyze
from dbward.sql.facts import Analysis, Relation, Risk, StatementFacts, StatementKind

READ = StatementKind.READ
WRITE = StatementKind.WRITE
DDL = StatementKind.DDL
PRIVILEGE = StatementKind.PRIVILEGE
ADMIN = StatementKind.ADMIN
TRANSACTION = StatementKind.TRANSACTION
SESSION = StatementKind.SESSION
UNKNOWN = StatementKind.UNKNOWN


def facts(sql: str) -> StatementFacts:
    """The facts of a string holding exactly one statement that parses."""
    analysis = analyze(sql)
    assert analysis.error is None, f"{sql!r} did not parse: {analysis.error}"
    assert len(analysis.statements) == 1, analysis.statements
    return analysis.statements[0]


def rel(name: str) -> Relation:
    """``"s.t"`` -> Relation("t", "s"); ``"t"`` -> Relation("t")."""
    schema, _, table = name.rpartition(".")
    return Relation(table, schema or None)


def rels(*names: str) -> set[Relation]:
    return {rel(n) for n in names}


def cols(f: StatementFacts) -> list[str]:
    """The columns as policy spells them: ``table.column`` where the table is known."""
    return [str(c) for c in f.columns]


# --------------------------------------------------------------------------- commands and kinds

COMMANDS = [
    # reads
    ("SELECT 1", "SELECT", READ),
    ("SELECT * FROM orders", "SELECT", READ),
    ("select * from orders", "SELECT", READ),
    ("TABLE orders", "SELECT", READ),
    ("SHOW search_path", "SHOW", READ),
    ("COPY orders TO STDOUT", "COPY TO", READ),
    ("EXPLAIN SELECT * FROM orders", "EXPLAIN", READ),
    ("EXPLAIN DELETE FROM orders", "EXPLAIN", READ),
    ("EXPLAIN ANALYZE SELECT * FROM orders", "EXPLAIN ANALYZE", READ),
    # writes
    ("INSERT INTO orders (id) VALUES (1)", "INSERT", WRITE),
    ("UPDATE orders SET status = 'x' WHERE id = 1", "UPDATE", WRITE),
    ("DELETE FROM orders WHERE id = 1", "DELETE", WRITE),
    (
        "MERGE INTO stock s USING deliveries d ON s.item = d.item "
        "WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty",
        "MERGE",
        WRITE,
    ),
    ("COPY orders FROM STDIN", "COPY FROM", WRITE),
    ("EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1", "EXPLAIN ANALYZE", WRITE),
    # ddl
    ("CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE", DDL),
    ("ALTER TABLE t ADD COLUMN note text", "ALTER TABLE", DDL),
    ("DROP TABLE t", "DROP TABLE", DDL),
    ("CREATE VIEW v AS SELECT id FROM orders", "CREATE VIEW", DDL),
    ("DROP VIEW v", "DROP VIEW", DDL),
    ("CREATE MATERIALIZED VIEW mv AS SELECT id FROM orders", "CREATE MATERIALIZED VIEW", DDL),
    ("DROP MATERIALIZED VIEW mv", "DROP MATERIALIZED VIEW", DDL),
    ("CREATE INDEX orders_status ON orders (status)", "CREATE INDEX", DDL),
    ("DROP SCHEMA sales CASCADE", "DROP SCHEMA", DDL),
    ("CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'", "CREATE FUNCTION", DDL),
    ("CREATE PROCEDURE nop() LANGUAGE sql AS 'SELECT 1'", "CREATE PROCEDURE", DDL),
    ("DROP FUNCTION one()", "DROP FUNCTION", DDL),
    ("TRUNCATE orders", "TRUNCATE", DDL),
    # privilege
    ("GRANT SELECT ON orders TO analyst", "GRANT", PRIVILEGE),
    ("REVOKE ALL ON orders FROM analyst", "REVOKE", PRIVILEGE),
    ("CREATE ROLE analyst LOGIN", "CREATE ROLE", PRIVILEGE),
    ("ALTER ROLE analyst SUPERUSER", "ALTER ROLE", PRIVILEGE),
    ("DROP ROLE analyst", "DROP ROLE", PRIVILEGE),
    # admin
    ("VACUUM orders", "VACUUM", ADMIN),
    ("VACUUM (FULL, ANALYZE) orders", "VACUUM", ADMIN),
    ("ANALYZE orders", "ANALYZE", ADMIN),
    ("CHECKPOINT", "CHECKPOINT", ADMIN),
    # transaction
    ("BEGIN", "BEGIN", TRANSACTION),
    ("COMMIT", "COMMIT", TRANSACTION),
    ("ROLLBACK", "ROLLBACK", TRANSACTION),
    ("SAVEPOINT sp1", "SAVEPOINT", TRANSACTION),
    # session
    ("SET statement_timeout = '5s'", "SET", SESSION),
    ("LISTEN jobs", "LISTEN", SESSION),
    ("NOTIFY jobs, 'go'", "NOTIFY", SESSION),
    ("DEALLOCATE p", "DEALLOCATE", SESSION),
    # unknown
    ("DO $$BEGIN PERFORM 1; END$$", "DO", UNKNOWN),
    ("CALL archive_orders(30)", "CALL", UNKNOWN),
]


@pytest.mark.parametrize(("sql", "command", "kind"), COMMANDS)
def test_command_and_kind(sql: str, command: str, kind: StatementKind) -> None:
    f = facts(sql)
    assert (f.command, f.kind) == (command, kind)


KINDS_ONLY = [
    ("VALUES (1), (2)", READ),
    ("SHOW ALL", READ),
    ("CREATE SCHEMA sales", DDL),
    ("COMMENT ON TABLE orders IS 'all orders'", DDL),
    ("ALTER TABLE orders RENAME TO orders_old", DDL),
    ("CREATE POLICY own_rows ON orders USING (owner = current_user)", PRIVILEGE),
    ("CLUSTER orders USING orders_pkey", ADMIN),
    ("START TRANSACTION", TRANSACTION),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", TRANSACTION),
    ("END", TRANSACTION),
    ("ABORT", TRANSACTION),
    ("RELEASE SAVEPOINT sp1", TRANSACTION),
    ("ROLLBACK TO SAVEPOINT sp1", TRANSACTION),
    ("PREPARE TRANSACTION 'tx1'", TRANSACTION),
    ("COMMIT PREPARED 'tx1'", TRANSACTION),
    ("UNLISTEN *", SESSION),
    ("DISCARD ALL", SESSION),
    ("DISCARD TEMP", SESSION),
    ("RESET statement_timeout", SESSION),
    ("DEALLOCATE ALL", SESSION),
]


@pytest.mark.parametrize(("sql", "kind"), KINDS_ONLY)
def test_kind(sql: str, kind: StatementKind) -> None:
    assert facts(sql).kind == kind


# --------------------------------------------------------------------------- the analysis object


def test_analysis_keeps_the_shape_not_the_literals() -> None:
    text = "SELECT * FROM orders WHERE id = 1"
    analysis = analyze(text)
    assert isinstance(analysis, Analysis)
    assert analysis.shape == "SELECT * FROM orders WHERE id = $1"
    assert analysis.error is None
    assert analysis.kinds == {READ}
    assert analysis.risks == frozenset()


def test_analyze_is_pure_and_deterministic() -> None:
    text = "UPDATE orders o SET status = 'x' FROM customers c WHERE c.id = o.customer_id"
    assert analyze(text) == analyze(text)


def test_facts_are_frozen() -> None:
    f = facts("SELECT 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.command = "DELETE"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "   ", ";", "-- just a comment", "/* nothing */ ;"])
def test_an_empty_string_has_no_statements_and_no_error(text: str) -> None:
    analysis = analyze(text)
    assert analysis.error is None
    assert analysis.statements == ()


# --------------------------------------------------------------------------- unparsable


@pytest.mark.parametrize(
    "text",
    [
        "SELEC 1",
        "SELECT * FROM",
        "DELETE FROM",
        "SELECT 'unterminated",
        "UPDATE orders SET WHERE id = 1",
        "DROP TABLE",
        "SELECT 1; SELEC 2",  # one bad part spoils the whole string
        "DELETE FROM orders; DROP",
    ],
)
def test_an_unparsable_string_is_an_error_without_statements(text: str) -> None:
    analysis = analyze(text)
    assert analysis.error
    assert isinstance(analysis.error, str)
    assert analysis.statements == ()
    assert analysis.kinds == frozenset()
    assert analysis.shape == ""


def test_the_error_is_the_parsers_message() -> None:
    analysis = analyze("SELEC 1")
    assert analysis.error is not None
    assert "syntax error" in analysis.error
    assert "SELEC" in analysis.error


# ------------------------------------------------------------------------- multi-statement strings


def test_each_part_of_a_multi_statement_string_in_order() -> None:
    analysis = analyze("SELECT * FROM a; DELETE FROM b; TRUNCATE c")
    assert analysis.error is None
    assert [s.command for s in analysis.statements] == ["SELECT", "DELETE", "TRUNCATE"]
    assert [s.kind for s in analysis.statements] == [READ, WRITE, DDL]
    assert analysis.statements[0].reads == (rel("a"),)
    assert analysis.statements[1].writes == (rel("b"),)
    assert rel("c") in analysis.statements[2].writes
    assert analysis.kinds == {READ, WRITE, DDL}
    assert {Risk.UNBOUNDED_WRITE, Risk.DESTRUCTIVE_DDL} <= analysis.risks
    # the risks stay with their part
    assert analysis.statements[0].risks == frozenset()
    assert Risk.UNBOUNDED_WRITE not in analysis.statements[2].risks


def test_a_transaction_block_in_one_string() -> None:
    analysis = analyze("BEGIN; UPDATE orders SET status = 'x' WHERE id = 7; COMMIT;")
    assert [s.command for s in analysis.statements] == ["BEGIN", "UPDATE", "COMMIT"]
    assert analysis.statements[1].where is True
    assert analysis.risks == frozenset()


def test_empty_parts_are_skipped() -> None:
    analysis = analyze(";;SELECT 1;;SELECT 2;")
    assert [s.command for s in analysis.statements] == ["SELECT", "SELECT"]


# --------------------------------------------------------------------------- names


def test_unqualified_names_have_no_schema() -> None:
    assert facts("SELECT * FROM orders").reads == (Relation("orders", None),)


def test_qualified_names_keep_their_schema() -> None:
    assert facts("SELECT * FROM sales.orders").reads == (Relation("orders", "sales"),)


def test_names_are_folded_to_lower_case() -> None:
    assert facts("SELECT * FROM Sales.ORDERS").reads == (Relation("orders", "sales"),)


def test_quoted_names_keep_their_case() -> None:
    assert facts('SELECT * FROM "Sales"."Orders"').reads == (Relation("Orders", "Sales"),)
    assert facts('SELECT * FROM "orders"').reads == (Relation("orders"),)


def test_a_database_qualified_name_keeps_schema_and_name() -> None:
    assert facts("SELECT * FROM app.sales.orders").reads == (Relation("orders", "sales"),)


def test_each_relation_once() -> None:
    f = facts("SELECT * FROM orders a JOIN orders b ON a.parent = b.id")
    assert f.reads == (rel("orders"),)


# --------------------------------------------------------------------------- SELECT


class TestSelect:
    def test_a_plain_select(self) -> None:
        f = facts("SELECT id, total FROM orders WHERE status = 'open'")
        assert set(f.reads) == rels("orders")
        assert f.writes == ()
        assert f.where is None
        assert f.risks == frozenset()

    def test_a_select_without_tables(self) -> None:
        f = facts("SELECT 1 + 1")
        assert (f.reads, f.writes, f.risks) == ((), (), frozenset())

    def test_joins(self) -> None:
        f = facts(
            "SELECT o.id, c.name FROM orders o "
            "JOIN customers c ON c.id = o.customer_id "
            "LEFT JOIN sales.regions r ON r.id = c.region_id "
            "CROSS JOIN currencies"
        )
        assert set(f.reads) == rels("orders", "customers", "sales.regions", "currencies")
        assert f.writes == ()

    def test_comma_joins(self) -> None:
        assert set(facts("SELECT * FROM a, b, c").reads) == rels("a", "b", "c")

    def test_join_using_and_natural_join(self) -> None:
        f = facts("SELECT * FROM a JOIN b USING (id) NATURAL JOIN c")
        assert set(f.reads) == rels("a", "b", "c")

    def test_subquery_in_where(self) -> None:
        f = facts(
            "SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE vip) "
            "AND EXISTS (SELECT 1 FROM payments p WHERE p.order_id = orders.id)"
        )
        assert set(f.reads) == rels("orders", "customers", "payments")

    def test_scalar_subquery_in_the_select_list(self) -> None:
        f = facts("SELECT id, (SELECT max(paid) FROM payments WHERE order_id = o.id) FROM orders o")
        assert set(f.reads) == rels("orders", "payments")

    def test_derived_table(self) -> None:
        f = facts("SELECT x FROM (SELECT id AS x FROM orders) AS sub")
        assert set(f.reads) == rels("orders")

    def test_subquery_in_having_and_order_by(self) -> None:
        f = facts(
            "SELECT status, count(*) FROM orders GROUP BY status "
            "HAVING count(*) > (SELECT avg(n) FROM stats) "
            "ORDER BY (SELECT 1 FROM ranks LIMIT 1)"
        )
        assert set(f.reads) == rels("orders", "stats", "ranks")

    def test_cte_names_are_not_relations(self) -> None:
        f = facts(
            "WITH recent AS (SELECT * FROM orders WHERE created > now() - interval '1 day') "
            "SELECT * FROM recent JOIN customers ON customers.id = recent.customer_id"
        )
        assert set(f.reads) == rels("orders", "customers")
        assert f.kind == READ

    def test_recursive_cte(self) -> None:
        f = facts(
            "WITH RECURSIVE tree(id, parent) AS ("
            "  SELECT id, parent FROM nodes WHERE parent IS NULL"
            "  UNION ALL SELECT n.id, n.parent FROM nodes n JOIN tree t ON n.parent = t.id"
            ") SELECT * FROM tree"
        )
        assert set(f.reads) == rels("nodes")

    def test_a_cte_name_does_not_hide_a_real_table_outside_its_scope(self) -> None:
        # the CTE is only visible inside the subquery: the outer salaries is the real table
        f = facts("SELECT * FROM (WITH salaries AS (SELECT 1) SELECT * FROM salaries) s, salaries")
        assert rel("salaries") in f.reads

    def test_a_cte_name_does_not_hide_a_real_table_in_a_sibling_subquery(self) -> None:
        f = facts(
            "SELECT (SELECT count(*) FROM salaries), "
            "(WITH salaries AS (SELECT 1) SELECT count(*) FROM salaries)"
        )
        assert rel("salaries") in f.reads

    def test_a_qualified_name_is_never_a_cte(self) -> None:
        f = facts("WITH orders AS (SELECT 1) SELECT * FROM orders, public.orders")
        assert set(f.reads) == rels("public.orders")

    @pytest.mark.parametrize("op", ["UNION", "UNION ALL", "INTERSECT", "EXCEPT"])
    def test_set_operations(self, op: str) -> None:
        f = facts(f"SELECT id FROM a {op} SELECT id FROM b {op} SELECT id FROM s.c")
        assert set(f.reads) == rels("a", "b", "s.c")
        assert f.kind == READ

    def test_lateral_subquery(self) -> None:
        f = facts(
            "SELECT * FROM customers c, LATERAL ("
            "  SELECT * FROM orders o WHERE o.customer_id = c.id ORDER BY created DESC LIMIT 3"
            ") recent"
        )
        assert set(f.reads) == rels("customers", "orders")

    def test_lateral_join(self) -> None:
        f = facts(
            "SELECT * FROM customers c "
            "LEFT JOIN LATERAL (SELECT * FROM orders o WHERE o.customer_id = c.id) x ON true"
        )
        assert set(f.reads) == rels("customers", "orders")

    def test_functions_in_from(self) -> None:
        f = facts("SELECT * FROM generate_series(1, 10) AS g(n)")
        assert f.reads == ()
        assert "generate_series" in f.functions
        assert f.kind == READ

    def test_functions_in_from_with_tables(self) -> None:
        f = facts(
            "SELECT * FROM orders o, unnest(o.tags) AS tag, "
            "ROWS FROM (generate_series(1, 3), jsonb_each(o.meta)) AS r"
        )
        assert set(f.reads) == rels("orders")
        assert {"unnest", "generate_series", "jsonb_each"} <= set(f.functions)

    def test_lateral_function(self) -> None:
        f = facts("SELECT * FROM customers c, LATERAL jsonb_array_elements(c.addresses) a")
        assert set(f.reads) == rels("customers")
        assert "jsonb_array_elements" in f.functions

    def test_tablesample(self) -> None:
        assert set(facts("SELECT * FROM orders TABLESAMPLE SYSTEM (1)").reads) == rels("orders")

    def test_only(self) -> None:
        assert set(facts("SELECT * FROM ONLY orders").reads) == rels("orders")

    def test_select_for_update_still_reads(self) -> None:
        f = facts("SELECT * FROM orders WHERE id = 1 FOR UPDATE")
        assert set(f.reads) == rels("orders")
        assert f.writes == ()

    def test_select_into_creates_a_table(self) -> None:
        f = facts("SELECT * INTO archive FROM orders")
        assert rel("orders") in f.reads
        assert rel("archive") in f.writes
        assert f.kind != READ

    def test_parameters(self) -> None:
        f = facts("SELECT * FROM orders WHERE id = $1 AND status = ANY($2)")
        assert set(f.reads) == rels("orders")
        assert f.kind == READ


# --------------------------------------------------------------------------- columns


class TestColumns:
    def test_one_table_qualifies_every_column(self) -> None:
        f = facts("SELECT id, email FROM customers WHERE vip ORDER BY created")
        assert {
            "customers.id",
            "customers.email",
            "customers.vip",
            "customers.created",
        } <= set(cols(f))

    def test_aliases_resolve_to_the_table(self) -> None:
        f = facts("SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id")
        expected = {"customers.email", "orders.total", "orders.customer_id", "customers.id"}
        assert expected <= set(cols(f))
        assert not {"c.email", "o.total"} & set(cols(f))

    def test_qualified_by_table_name(self) -> None:
        f = facts("SELECT customers.email FROM customers, orders")
        assert "customers.email" in cols(f)

    def test_unqualified_with_two_tables_is_a_bare_column(self) -> None:
        f = facts("SELECT email FROM customers JOIN orders ON orders.customer_id = customers.id")
        assert "email" in cols(f)
        assert "orders.customer_id" in cols(f)

    def test_quoted_columns_keep_their_case(self) -> None:
        f = facts('SELECT "Email" FROM "Customers"')
        assert "Customers.Email" in cols(f)

    def test_columns_are_folded(self) -> None:
        f = facts("SELECT EMAIL FROM Customers")
        assert "customers.email" in cols(f)

    def test_each_column_once(self) -> None:
        f = facts("SELECT email, email FROM customers WHERE email IS NOT NULL")
        assert cols(f).count("customers.email") == 1

    def test_update_set_and_where_columns(self) -> None:
        f = facts("UPDATE customers SET email = lower(email) WHERE id = 5")
        assert {"customers.email", "customers.id"} <= set(cols(f))

    def test_insert_target_columns(self) -> None:
        f = facts("INSERT INTO customers (id, email) VALUES (1, 'x')")
        assert {"customers.id", "customers.email"} <= set(cols(f))

    def test_subquery_columns(self) -> None:
        f = facts(
            "SELECT 1 FROM orders o WHERE o.customer_id IN "
            "(SELECT c.id FROM customers c WHERE c.vip)"
        )
        assert {"orders.customer_id", "customers.id", "customers.vip"} <= set(cols(f))


# --------------------------------------------------------------------------- functions


class TestFunctions:
    def test_functions_are_lower_case(self) -> None:
        f = facts("SELECT NOW(), Lower('X'), count(*) FROM orders")
        assert {"now", "lower", "count"} <= set(f.functions)

    def test_qualified_functions_keep_the_schema(self) -> None:
        f = facts("SELECT pg_catalog.now(), billing.total(1)")
        assert {"pg_catalog.now", "billing.total"} <= set(f.functions)

    def test_quoted_function_keeps_its_case(self) -> None:
        assert "MyFunc" in facts('SELECT "MyFunc"(1)').functions

    def test_functions_everywhere_in_the_statement(self) -> None:
        f = facts(
            "WITH x AS (SELECT f_cte()) "
            "SELECT f_select(), (SELECT f_sub()) FROM x "
            "WHERE f_where(1) AND EXISTS (SELECT f_exists()) "
            "GROUP BY f_group() HAVING f_having() ORDER BY f_order()"
        )
        assert {
            "f_cte",
            "f_select",
            "f_sub",
            "f_where",
            "f_exists",
            "f_group",
            "f_having",
            "f_order",
        } <= set(f.functions)

    def test_nested_function_calls(self) -> None:
        assert {"outer_f", "inner_f"} <= set(facts("SELECT outer_f(inner_f(1))").functions)

    def test_window_and_aggregate_functions(self) -> None:
        f = facts("SELECT row_number() OVER (ORDER BY id), sum(total) FILTER (WHERE paid) FROM o")
        assert {"row_number", "sum"} <= set(f.functions)

    def test_functions_in_dml(self) -> None:
        f = facts("UPDATE orders SET touched = now() WHERE id = get_id() RETURNING audit_f(id)")
        assert {"now", "get_id", "audit_f"} <= set(f.functions)

    def test_each_function_once(self) -> None:
        assert facts("SELECT now(), now()").functions.count("now") == 1


# --------------------------------------------------------------------------- INSERT


class TestInsert:
    def test_insert_values(self) -> None:
        f = facts("INSERT INTO orders (id, total) VALUES (1, 10), (2, 20)")
        assert f.writes == (rel("orders"),)
        assert f.reads == ()
        assert f.where is None
        assert f.risks == frozenset()

    def test_insert_select_reads_and_writes(self) -> None:
        f = facts(
            "INSERT INTO archive.orders SELECT * FROM orders o "
            "JOIN customers c ON c.id = o.customer_id WHERE o.created < now()"
        )
        assert f.kind == WRITE
        assert f.writes == (rel("archive.orders"),)
        assert set(f.reads) == rels("orders", "customers")
        assert "now" in f.functions
        assert f.where is None

    def test_insert_with_a_subquery_in_values(self) -> None:
        f = facts("INSERT INTO orders (customer_id) VALUES ((SELECT id FROM customers LIMIT 1))")
        assert f.writes == (rel("orders"),)
        assert rel("customers") in f.reads

    def test_on_conflict_do_update(self) -> None:
        f = facts(
            "INSERT INTO counters AS c (key, n) VALUES ('a', 1) "
            "ON CONFLICT (key) DO UPDATE SET n = c.n + excluded.n WHERE c.n < 100"
        )
        assert f.kind == WRITE
        assert f.command == "INSERT"
        assert f.writes == (rel("counters"),)
        assert rel("excluded") not in f.tables
        assert f.where is None
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_on_conflict_do_update_reading_another_table(self) -> None:
        f = facts(
            "INSERT INTO counters (key, n) VALUES ('a', 1) ON CONFLICT (key) "
            "DO UPDATE SET n = (SELECT max(n) FROM limits)"
        )
        assert f.writes == (rel("counters"),)
        assert rel("limits") in f.reads

    def test_on_conflict_do_nothing(self) -> None:
        f = facts("INSERT INTO counters (key) VALUES ('a') ON CONFLICT DO NOTHING")
        assert f.writes == (rel("counters"),)
        assert f.kind == WRITE

    def test_insert_default_values_returning(self) -> None:
        f = facts("INSERT INTO orders DEFAULT VALUES RETURNING id")
        assert f.writes == (rel("orders"),)

    def test_insert_with_cte_source(self) -> None:
        f = facts("WITH src AS (SELECT * FROM staging) INSERT INTO orders SELECT * FROM src")
        assert f.writes == (rel("orders"),)
        assert set(f.reads) == rels("staging")


# --------------------------------------------------------------------------- UPDATE / DELETE


class TestUpdate:
    def test_update_with_where(self) -> None:
        f = facts("UPDATE orders SET status = 'shipped' WHERE id = 42")
        assert f.writes == (rel("orders"),)
        assert f.where is True
        assert f.risks == frozenset()

    def test_update_without_where(self) -> None:
        f = facts("UPDATE orders SET status = 'shipped'")
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_update_from(self) -> None:
        f = facts(
            "UPDATE orders o SET status = 'blocked' FROM customers c "
            "WHERE c.id = o.customer_id AND c.banned"
        )
        assert f.writes == (rel("orders"),)
        assert rel("customers") in f.reads
        assert rel("customers") not in f.writes
        assert f.where is True
        assert "orders.status" in cols(f)

    def test_update_with_a_subquery_in_set(self) -> None:
        f = facts("UPDATE orders SET total = (SELECT sum(amount) FROM lines) WHERE id = 1")
        assert f.writes == (rel("orders"),)
        assert rel("lines") in f.reads

    def test_update_qualified_target(self) -> None:
        f = facts("UPDATE ONLY sales.orders SET status = 'x' WHERE id = 1 RETURNING *")
        assert f.writes == (rel("sales.orders"),)


class TestDelete:
    def test_delete_with_where(self) -> None:
        f = facts("DELETE FROM orders WHERE id = 42")
        assert f.writes == (rel("orders"),)
        assert f.where is True
        assert f.risks == frozenset()

    def test_delete_without_where(self) -> None:
        f = facts("DELETE FROM orders")
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks
        assert f.kind == WRITE

    def test_delete_using(self) -> None:
        f = facts("DELETE FROM orders o USING customers c WHERE o.customer_id = c.id AND c.banned")
        assert f.writes == (rel("orders"),)
        assert rel("customers") in f.reads
        assert rel("customers") not in f.writes
        assert f.where is True

    def test_delete_using_without_where(self) -> None:
        f = facts("DELETE FROM orders USING customers")
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_delete_with_a_subquery(self) -> None:
        f = facts("DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE gone)")
        assert f.writes == (rel("orders"),)
        assert rel("customers") in f.reads
        assert f.where is True


# --------------------------------------------------------------------------- MERGE


class TestMerge:
    SQL = (
        "MERGE INTO stock s USING deliveries d ON s.item = d.item "
        "WHEN MATCHED AND d.qty = 0 THEN DELETE "
        "WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty "
        "WHEN NOT MATCHED THEN INSERT (item, qty) VALUES (d.item, d.qty)"
    )

    def test_merge(self) -> None:
        f = facts(self.SQL)
        assert (f.command, f.kind) == ("MERGE", WRITE)
        assert f.writes == (rel("stock"),)
        assert rel("deliveries") in f.reads
        assert rel("deliveries") not in f.writes
        assert f.where is None

    def test_merge_using_a_subquery(self) -> None:
        f = facts(
            "MERGE INTO stock s USING (SELECT item, sum(qty) AS qty FROM lines GROUP BY item) d "
            "ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = d.qty"
        )
        assert f.writes == (rel("stock"),)
        assert rel("lines") in f.reads


# --------------------------------------------------------------------------- COPY


class TestCopy:
    def test_copy_to_stdout_is_a_read_and_an_export(self) -> None:
        f = facts("COPY orders TO STDOUT")
        assert (f.command, f.kind) == ("COPY TO", READ)
        assert f.reads == (rel("orders"),)
        assert f.writes == ()
        assert Risk.DATA_EXPORT in f.risks
        assert Risk.SERVER_FILE_ACCESS not in f.risks
        assert Risk.PROGRAM_EXECUTION not in f.risks

    def test_copy_query_to_stdout(self) -> None:
        f = facts(
            "COPY (SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id) "
            "TO STDOUT WITH (FORMAT csv, HEADER)"
        )
        assert (f.command, f.kind) == ("COPY TO", READ)
        assert set(f.reads) == rels("orders", "customers")
        assert Risk.DATA_EXPORT in f.risks

    def test_copy_columns_to_stdout(self) -> None:
        f = facts("COPY sales.orders (id, total) TO STDOUT")
        assert f.reads == (rel("sales.orders"),)

    def test_copy_to_a_server_file(self) -> None:
        f = facts("COPY orders TO 'orders.csv'")
        assert f.command == "COPY TO"
        assert Risk.SERVER_FILE_ACCESS in f.risks
        assert Risk.DATA_EXPORT in f.risks
        assert Risk.PROGRAM_EXECUTION not in f.risks

    def test_copy_to_a_program(self) -> None:
        f = facts("COPY orders TO PROGRAM 'gzip > orders.gz'")
        assert f.command == "COPY TO"
        assert Risk.PROGRAM_EXECUTION in f.risks

    def test_copy_from_stdin_is_a_write(self) -> None:
        f = facts("COPY orders (id, total) FROM STDIN WITH (FORMAT csv)")
        assert (f.command, f.kind) == ("COPY FROM", WRITE)
        assert f.writes == (rel("orders"),)
        assert Risk.SERVER_FILE_ACCESS not in f.risks
        assert Risk.PROGRAM_EXECUTION not in f.risks
        assert Risk.DATA_EXPORT not in f.risks

    def test_copy_from_a_server_file(self) -> None:
        f = facts("COPY orders FROM 'orders.csv'")
        assert (f.command, f.kind) == ("COPY FROM", WRITE)
        assert f.writes == (rel("orders"),)
        assert Risk.SERVER_FILE_ACCESS in f.risks

    def test_copy_from_a_program(self) -> None:
        f = facts("COPY orders FROM PROGRAM 'cat orders.csv'")
        assert (f.command, f.kind) == ("COPY FROM", WRITE)
        assert Risk.PROGRAM_EXECUTION in f.risks

    def test_copy_from_with_a_where(self) -> None:
        f = facts("COPY orders FROM STDIN WHERE total > 0")
        assert f.writes == (rel("orders"),)
        assert f.where is None


# --------------------------------------------------------------------------- DDL


class TestDdl:
    def test_create_table(self) -> None:
        f = facts("CREATE TABLE sales.orders (id bigint PRIMARY KEY, total numeric)")
        assert (f.command, f.kind) == ("CREATE TABLE", DDL)
        assert rel("sales.orders") in f.tables
        assert Risk.DESTRUCTIVE_DDL not in f.risks
        assert f.creates_temp == ()

    def test_create_table_as(self) -> None:
        f = facts("CREATE TABLE summary AS SELECT status, count(*) FROM orders GROUP BY status")
        assert f.kind == DDL
        assert rel("orders") in f.reads
        assert rel("summary") in f.tables

    def test_create_table_referencing_another(self) -> None:
        f = facts("CREATE TABLE lines (order_id int REFERENCES orders (id))")
        assert f.kind == DDL
        assert rel("lines") in f.tables

    def test_create_view_reads_its_query_tables(self) -> None:
        f = facts("CREATE OR REPLACE VIEW open_orders AS SELECT * FROM orders WHERE open")
        assert (f.command, f.kind) == ("CREATE VIEW", DDL)
        assert rel("orders") in f.reads
        assert rel("open_orders") in f.tables

    def test_alter_table(self) -> None:
        f = facts("ALTER TABLE sales.orders ADD COLUMN note text")
        assert (f.command, f.kind) == ("ALTER TABLE", DDL)
        assert rel("sales.orders") in f.tables
        assert Risk.DESTRUCTIVE_DDL not in f.risks

    def test_drop_table(self) -> None:
        f = facts("DROP TABLE orders")
        assert (f.command, f.kind) == ("DROP TABLE", DDL)
        assert Risk.DESTRUCTIVE_DDL in f.risks
        assert rel("orders") in f.tables

    def test_drop_several_tables(self) -> None:
        f = facts("DROP TABLE IF EXISTS a, sales.b CASCADE")
        assert rels("a", "sales.b") <= set(f.tables)
        assert Risk.DESTRUCTIVE_DDL in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "DROP SCHEMA sales CASCADE",
            "DROP DATABASE app",
            "DROP MATERIALIZED VIEW monthly",
        ],
    )
    def test_destructive_drops(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == DDL
        assert Risk.DESTRUCTIVE_DDL in f.risks

    def test_drop_view_holds_no_data(self) -> None:
        # the guardrail lists DROP TABLE/SCHEMA/DATABASE and materialized views only
        f = facts("DROP VIEW open_orders")
        assert f.kind == DDL
        assert Risk.DESTRUCTIVE_DDL not in f.risks

    def test_create_function_language_sql_exposes_the_body(self) -> None:
        f = facts("CREATE FUNCTION purge() RETURNS void LANGUAGE sql AS 'DELETE FROM orders'")
        assert (f.command, f.kind) == ("CREATE FUNCTION", DDL)
        assert rel("orders") in f.writes
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_create_function_dollar_quoted_body(self) -> None:
        f = facts(
            "CREATE OR REPLACE FUNCTION archive(d date) RETURNS void LANGUAGE sql AS $$\n"
            "  INSERT INTO archive SELECT * FROM orders WHERE created < d;\n"
            "  DELETE FROM orders WHERE created < d;\n"
            "$$"
        )
        assert f.kind == DDL
        assert rels("archive", "orders") <= set(f.writes)
        assert rel("orders") in f.reads
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_create_function_body_functions_and_risks(self) -> None:
        f = facts(
            "CREATE FUNCTION peek() RETURNS text LANGUAGE sql AS "
            "$$SELECT pg_read_file('postgresql.conf')$$"
        )
        assert f.kind == DDL
        assert "pg_read_file" in f.functions
        assert Risk.SERVER_FILE_ACCESS in f.risks

    def test_create_function_sql_standard_body(self) -> None:
        f = facts(
            "CREATE FUNCTION purge() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM orders; END"
        )
        assert f.kind == DDL
        assert rel("orders") in f.writes
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_create_function_harmless_body(self) -> None:
        f = facts("CREATE FUNCTION add1(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'")
        assert f.kind == DDL
        assert f.writes == () or all(r.name == "add1" for r in f.writes)
        assert Risk.UNBOUNDED_WRITE not in f.risks
        assert Risk.DESTRUCTIVE_DDL not in f.risks

    def test_create_procedure_language_sql_exposes_the_body(self) -> None:
        f = facts("CREATE PROCEDURE wipe() LANGUAGE sql AS 'TRUNCATE orders'")
        assert (f.command, f.kind) == ("CREATE PROCEDURE", DDL)
        assert rel("orders") in f.writes
        assert Risk.DESTRUCTIVE_DDL in f.risks

    def test_create_function_plpgsql_is_ddl(self) -> None:
        f = facts("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM 1; END$$")
        assert (f.command, f.kind) == ("CREATE FUNCTION", DDL)

    def test_drop_function(self) -> None:
        f = facts("DROP FUNCTION IF EXISTS archive(date)")
        assert (f.command, f.kind) == ("DROP FUNCTION", DDL)


class TestTruncate:
    def test_truncate(self) -> None:
        f = facts("TRUNCATE orders")
        assert (f.command, f.kind) == ("TRUNCATE", DDL)
        assert f.writes == (rel("orders"),)
        assert Risk.DESTRUCTIVE_DDL in f.risks

    def test_truncate_several(self) -> None:
        f = facts("TRUNCATE TABLE a, sales.b RESTART IDENTITY CASCADE")
        assert set(f.writes) == rels("a", "sales.b")
        assert Risk.DESTRUCTIVE_DDL in f.risks


# --------------------------------------------------------------------------- privileges and roles


class TestPrivilege:
    @pytest.mark.parametrize(
        "sql",
        [
            "GRANT SELECT ON orders TO analyst",
            "GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO analyst",
            "REVOKE ALL ON orders FROM analyst",
            "GRANT analyst TO alice",
            "REVOKE analyst FROM alice",
            "CREATE ROLE analyst LOGIN",
            "DROP ROLE analyst",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO analyst",
        ],
    )
    def test_privilege_changes(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == PRIVILEGE
        assert Risk.PRIVILEGE_CHANGE in f.risks
        assert Risk.PRIVILEGE_ESCALATION not in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "ALTER ROLE alice SUPERUSER",
            "ALTER ROLE alice WITH BYPASSRLS",
            "ALTER USER alice REPLICATION",
            "CREATE ROLE root SUPERUSER LOGIN",
            "CREATE USER sneaky WITH BYPASSRLS",
            "ALTER ROLE alice WITH LOGIN SUPERUSER",
        ],
    )
    def test_privilege_escalation(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == PRIVILEGE
        assert Risk.PRIVILEGE_ESCALATION in f.risks

    @pytest.mark.parametrize(
        "role",
        [
            "pg_read_server_files",
            "pg_write_server_files",
            "pg_execute_server_program",
            "pg_read_all_data",
            "pg_write_all_data",
        ],
    )
    def test_granting_a_powerful_built_in_role_is_escalation(self, role: str) -> None:
        f = facts(f"GRANT {role} TO alice")
        assert f.kind == PRIVILEGE
        assert Risk.PRIVILEGE_ESCALATION in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "ALTER ROLE alice NOSUPERUSER",
            "ALTER ROLE alice NOBYPASSRLS NOREPLICATION",
            "CREATE ROLE app NOSUPERUSER LOGIN",
        ],
    )
    def test_taking_powers_away_is_no_escalation(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == PRIVILEGE
        assert Risk.PRIVILEGE_ESCALATION not in f.risks


class TestRoleChange:
    @pytest.mark.parametrize(
        "sql",
        [
            "SET ROLE admin",
            "SET LOCAL ROLE admin",
            "SET SESSION AUTHORIZATION admin",
            "SET SESSION AUTHORIZATION DEFAULT",
            "RESET ROLE",
        ],
    )
    def test_role_change(self, sql: str) -> None:
        assert Risk.ROLE_CHANGE in facts(sql).risks

    def test_set_config_of_role_is_a_role_change(self) -> None:
        # the same as SET ROLE, spelled as a function call
        f = facts("SELECT set_config('role', 'admin', false)")
        assert Risk.ROLE_CHANGE in f.risks

    def test_an_ordinary_setting_is_no_role_change(self) -> None:
        assert Risk.ROLE_CHANGE not in facts("SET work_mem = '64MB'").risks


class TestConfig:
    def test_set(self) -> None:
        f = facts("SET statement_timeout = '5s'")
        assert (f.command, f.kind) == ("SET", SESSION)
        assert Risk.CONFIG_CHANGE in f.risks
        assert f.settings == (("statement_timeout", "5s"),)

    def test_set_to_and_local(self) -> None:
        f = facts("SET LOCAL work_mem TO '64MB'")
        assert Risk.CONFIG_CHANGE in f.risks
        assert f.settings == (("work_mem", "64MB"),)

    def test_set_names_are_lower_case(self) -> None:
        f = facts("SET Statement_Timeout = 0")
        assert [name for name, _ in f.settings] == ["statement_timeout"]

    def test_reset(self) -> None:
        f = facts("RESET statement_timeout")
        assert f.kind == SESSION
        assert f.settings == (("statement_timeout", None),)

    def test_set_search_path(self) -> None:
        f = facts("SET search_path TO sales, public")
        assert [name for name, _ in f.settings] == ["search_path"]
        assert Risk.CONFIG_CHANGE in f.risks

    def test_set_config_function(self) -> None:
        f = facts("SELECT set_config('statement_timeout', '0', false)")
        assert "set_config" in f.functions
        assert Risk.CONFIG_CHANGE in f.risks

    def test_qualified_set_config_function(self) -> None:
        f = facts("SELECT pg_catalog.set_config('work_mem', '1GB', true)")
        assert Risk.CONFIG_CHANGE in f.risks

    def test_alter_system(self) -> None:
        f = facts("ALTER SYSTEM SET max_connections = 500")
        assert Risk.CONFIG_CHANGE in f.risks

    def test_alter_role_set(self) -> None:
        f = facts("ALTER ROLE alice SET search_path = sales")
        assert Risk.CONFIG_CHANGE in f.risks

    def test_alter_database_set(self) -> None:
        f = facts("ALTER DATABASE app SET statement_timeout = 0")
        assert Risk.CONFIG_CHANGE in f.risks

    def test_show_is_no_change(self) -> None:
        f = facts("SHOW statement_timeout")
        assert f.kind == READ
        assert f.risks == frozenset()


class TestAdmin:
    @pytest.mark.parametrize(
        "sql",
        ["VACUUM", "VACUUM FULL orders", "VACUUM (VERBOSE) orders", "ANALYZE", "CHECKPOINT"],
    )
    def test_admin(self, sql: str) -> None:
        assert facts(sql).kind == ADMIN


class TestTransaction:
    @pytest.mark.parametrize(
        "sql",
        [
            "BEGIN",
            "BEGIN READ ONLY",
            "COMMIT",
            "COMMIT AND CHAIN",
            "ROLLBACK",
            "SAVEPOINT a",
            "RELEASE a",
            "ROLLBACK TO a",
        ],
    )
    def test_transaction(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == TRANSACTION
        assert (f.reads, f.writes, f.risks) == ((), (), frozenset())


class TestSessionStatements:
    @pytest.mark.parametrize(
        "sql", ["LISTEN jobs", "UNLISTEN jobs", "NOTIFY jobs", "DISCARD PLANS", "DISCARD ALL"]
    )
    def test_session(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == SESSION
        assert (f.reads, f.writes) == ((), ())

    def test_deallocate(self) -> None:
        f = facts("DEALLOCATE PREPARE p1")
        assert f.kind == SESSION
        assert f.deallocates == "p1"

    def test_deallocate_all(self) -> None:
        f = facts("DEALLOCATE ALL")
        assert f.deallocates == ""


# --------------------------------------------------------------------------- PREPARE / EXECUTE


class TestPrepare:
    def test_prepare_has_the_facts_of_its_statement(self) -> None:
        f = facts("PREPARE purge AS DELETE FROM orders")
        assert f.command == "PREPARE"
        assert f.prepares == "purge"
        assert f.writes == (rel("orders"),)
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_prepare_with_parameters(self) -> None:
        f = facts("PREPARE q(int, text) AS SELECT * FROM orders WHERE id = $1 AND status = $2")
        assert f.command == "PREPARE"
        assert f.prepares == "q"
        assert f.reads == (rel("orders"),)
        assert f.writes == ()

    def test_prepare_name_is_folded(self) -> None:
        assert facts("PREPARE MyQuery AS SELECT 1").prepares == "myquery"

    def test_prepare_of_a_risky_function(self) -> None:
        f = facts("PREPARE r AS SELECT pg_read_file('postgresql.conf')")
        assert Risk.SERVER_FILE_ACCESS in f.risks

    def test_execute_without_a_session_is_unknown(self) -> None:
        f = facts("EXECUTE never_prepared(1)")
        assert f.command == "EXECUTE"
        assert f.executes == "never_prepared"
        assert f.kind == UNKNOWN
        assert Risk.DYNAMIC_SQL in f.risks

    def test_execute_is_not_cacheable(self) -> None:
        assert analyze("EXECUTE p").cacheable is False


# --------------------------------------------------------------------------- DO and CALL


class TestDoAndCall:
    def test_do(self) -> None:
        f = facts("DO $$BEGIN DELETE FROM orders; END$$")
        assert (f.command, f.kind) == ("DO", UNKNOWN)
        assert Risk.DYNAMIC_SQL in f.risks

    def test_do_with_language(self) -> None:
        f = facts("DO LANGUAGE plpgsql 'BEGIN NULL; END'")
        assert f.kind == UNKNOWN
        assert Risk.DYNAMIC_SQL in f.risks

    def test_call(self) -> None:
        f = facts("CALL archive_orders(30)")
        assert (f.command, f.kind) == ("CALL", UNKNOWN)
        assert "archive_orders" in f.functions

    def test_call_qualified(self) -> None:
        f = facts("CALL Billing.Close_Month(now())")
        assert f.kind == UNKNOWN
        assert {"billing.close_month", "now"} <= set(f.functions)


# --------------------------------------------------------------------------- risky functions


RISKY_FUNCTIONS = [
    ("SELECT pg_terminate_backend(1234)", {Risk.ADMIN_FUNCTION}),
    ("SELECT pg_cancel_backend(1234)", {Risk.ADMIN_FUNCTION}),
    ("SELECT pg_reload_conf()", {Risk.ADMIN_FUNCTION}),
    (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'bob'",
        {Risk.ADMIN_FUNCTION},
    ),
    ("SELECT pg_read_file('postgresql.conf')", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT pg_read_binary_file('postgresql.conf')", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT pg_ls_dir('.')", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT * FROM pg_ls_dir('.') AS f", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT pg_stat_file('postgresql.conf')", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT lo_import('data.bin')", {Risk.LARGE_OBJECT, Risk.SERVER_FILE_ACCESS}),
    ("SELECT lo_export(16400, 'data.bin')", {Risk.LARGE_OBJECT, Risk.SERVER_FILE_ACCESS}),
    ("SELECT lo_unlink(16400)", {Risk.LARGE_OBJECT}),
    ("SELECT dblink_exec('loopback', 'DELETE FROM orders')", {Risk.DYNAMIC_SQL}),
    ("SELECT * FROM dblink('loopback', 'SELECT 1') AS t(x int)", {Risk.DYNAMIC_SQL}),
    ("SELECT query_to_xml('SELECT * FROM orders', true, false, '')", {Risk.DYNAMIC_SQL}),
    # however spelled
    ("SELECT PG_TERMINATE_BACKEND(1234)", {Risk.ADMIN_FUNCTION}),
    ('SELECT "pg_terminate_backend"(1234)', {Risk.ADMIN_FUNCTION}),
    ("SELECT pg_catalog.pg_terminate_backend(1234)", {Risk.ADMIN_FUNCTION}),
    ("SELECT pg_catalog.pg_read_file('postgresql.conf')", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT pg_catalog.lo_import('data.bin')", {Risk.LARGE_OBJECT, Risk.SERVER_FILE_ACCESS}),
    # wherever they are
    ("SELECT 1 FROM orders WHERE id = pg_cancel_backend(1)", {Risk.ADMIN_FUNCTION}),
    (
        "SELECT * FROM orders WHERE id IN (SELECT length(pg_read_file('x')))",
        {Risk.SERVER_FILE_ACCESS},
    ),
    ("WITH x AS (SELECT pg_read_file('x')) SELECT * FROM x", {Risk.SERVER_FILE_ACCESS}),
    ("INSERT INTO loot (body) VALUES (pg_read_file('x'))", {Risk.SERVER_FILE_ACCESS}),
    ("UPDATE t SET body = pg_read_file('x') WHERE id = 1", {Risk.SERVER_FILE_ACCESS}),
    ("SELECT CASE WHEN true THEN pg_reload_conf() END", {Risk.ADMIN_FUNCTION}),
    ("SELECT coalesce(NULL, pg_reload_conf())", {Risk.ADMIN_FUNCTION}),
    ("SELECT ARRAY[pg_reload_conf()]", {Risk.ADMIN_FUNCTION}),
    ("SELECT pg_reload_conf()::text", {Risk.ADMIN_FUNCTION}),
    ("EXPLAIN ANALYZE SELECT pg_terminate_backend(1)", {Risk.ADMIN_FUNCTION}),
    ("COPY (SELECT pg_read_file('x')) TO STDOUT", {Risk.SERVER_FILE_ACCESS, Risk.DATA_EXPORT}),
]


@pytest.mark.parametrize(("sql", "risks"), RISKY_FUNCTIONS)
def test_risky_functions(sql: str, risks: set[Risk]) -> None:
    f = facts(sql)
    assert risks <= f.risks, f.risks


def test_risky_function_names_are_in_functions() -> None:
    f = facts("SELECT pg_terminate_backend(1), pg_catalog.pg_read_file('x')")
    assert {"pg_terminate_backend", "pg_catalog.pg_read_file"} <= set(f.functions)


def test_an_ordinary_function_has_no_risk() -> None:
    assert facts("SELECT lower(email), now() FROM customers").risks == frozenset()


def test_a_risky_name_as_a_column_or_table_is_no_call() -> None:
    f = facts("SELECT pg_read_file FROM pg_terminate_backend")
    assert f.risks == frozenset()
    assert f.functions == ()


class TestSequences:
    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT nextval('order_ids')",
            "SELECT setval('order_ids', 100)",
            "SELECT setval('order_ids', 100, false)",
            "SELECT pg_catalog.nextval('order_ids')",
            "SELECT * FROM orders WHERE id = nextval('order_ids')",
        ],
    )
    def test_sequence_changes_are_writes(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == WRITE
        assert f.command == "SELECT"

    def test_currval_is_a_read(self) -> None:
        assert facts("SELECT currval('order_ids')").kind == READ


# --------------------------------------------------------------------------- EXPLAIN


class TestExplain:
    def test_explain_select(self) -> None:
        f = facts("EXPLAIN SELECT * FROM orders JOIN customers USING (customer_id)")
        assert (f.command, f.kind) == ("EXPLAIN", READ)
        assert set(f.reads) == rels("orders", "customers")

    def test_plain_explain_of_dml_is_a_read(self) -> None:
        f = facts("EXPLAIN DELETE FROM orders")
        assert (f.command, f.kind) == ("EXPLAIN", READ)
        assert f.writes == ()
        assert rel("orders") in f.reads
        assert Risk.UNBOUNDED_WRITE not in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "EXPLAIN (VERBOSE, COSTS off) UPDATE orders SET status = 'x'",
            "EXPLAIN VERBOSE UPDATE orders SET status = 'x'",
            "EXPLAIN (ANALYZE false) UPDATE orders SET status = 'x'",
            "EXPLAIN (ANALYZE off, BUFFERS) UPDATE orders SET status = 'x'",
        ],
    )
    def test_explain_that_does_not_run(self, sql: str) -> None:
        f = facts(sql)
        assert (f.command, f.kind) == ("EXPLAIN", READ)
        assert f.writes == ()
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_explain_analyze_of_dml_has_the_inner_facts(self) -> None:
        f = facts("EXPLAIN ANALYZE DELETE FROM orders")
        assert (f.command, f.kind) == ("EXPLAIN ANALYZE", WRITE)
        assert f.writes == (rel("orders"),)
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "EXPLAIN (ANALYZE) UPDATE orders SET status = 'x'",
            "EXPLAIN (ANALYZE true) UPDATE orders SET status = 'x'",
            "EXPLAIN (ANALYZE on, BUFFERS) UPDATE orders SET status = 'x'",
            "EXPLAIN (FORMAT json, ANALYZE 1) UPDATE orders SET status = 'x'",
            "EXPLAIN ANALYZE VERBOSE UPDATE orders SET status = 'x'",
            "explain analyse update orders set status = 'x'",
        ],
    )
    def test_explain_analyze_spellings(self, sql: str) -> None:
        f = facts(sql)
        assert (f.command, f.kind) == ("EXPLAIN ANALYZE", WRITE)
        assert f.writes == (rel("orders"),)
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_explain_analyze_with_where(self) -> None:
        f = facts("EXPLAIN ANALYZE UPDATE orders SET status = 'x' WHERE id = 1")
        assert f.where is True
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_explain_analyze_of_a_writing_cte(self) -> None:
        f = facts("EXPLAIN ANALYZE WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d")
        assert f.kind == WRITE
        assert rel("orders") in f.writes
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_explain_analyze_of_a_select(self) -> None:
        f = facts("EXPLAIN ANALYZE SELECT * FROM orders")
        assert (f.command, f.kind) == ("EXPLAIN ANALYZE", READ)
        assert f.reads == (rel("orders"),)


# --------------------------------------------------------------------------- writing CTEs


class TestWritingCtes:
    def test_delete_in_a_cte(self) -> None:
        f = facts("WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d")
        assert f.kind == WRITE
        assert f.writes == (rel("orders"),)
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_bounded_update_in_a_cte(self) -> None:
        f = facts(
            "WITH u AS (UPDATE orders SET status = 'x' WHERE id = 3 RETURNING id) SELECT * FROM u"
        )
        assert f.kind == WRITE
        assert f.writes == (rel("orders"),)
        assert f.where is True
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_insert_in_a_cte(self) -> None:
        f = facts("WITH i AS (INSERT INTO log (msg) VALUES ('x') RETURNING id) SELECT id FROM i")
        assert f.kind == WRITE
        assert f.writes == (rel("log"),)
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_move_rows(self) -> None:
        f = facts(
            "WITH moved AS (DELETE FROM orders WHERE created < now() - interval '1 year' "
            "RETURNING *) INSERT INTO archive SELECT * FROM moved"
        )
        assert f.kind == WRITE
        assert set(f.writes) == rels("orders", "archive")
        assert f.where is True
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_one_unbounded_cte_among_bounded(self) -> None:
        f = facts(
            "WITH a AS (UPDATE x SET v = 1 WHERE id = 1 RETURNING 1), "
            "b AS (DELETE FROM y RETURNING 1) SELECT * FROM a, b"
        )
        assert set(f.writes) == rels("x", "y")
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_unbounded_cte_under_a_bounded_update(self) -> None:
        f = facts(
            "WITH d AS (DELETE FROM a RETURNING id) "
            "UPDATE b SET flag = true WHERE id IN (SELECT id FROM d)"
        )
        assert set(f.writes) == rels("a", "b")
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_a_writing_cte_that_nobody_reads_still_runs(self) -> None:
        f = facts("WITH d AS (DELETE FROM orders) SELECT 1")
        assert f.kind == WRITE
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_nested_writing_cte(self) -> None:
        f = facts(
            "WITH outer_cte AS (WITH inner_cte AS (DELETE FROM orders RETURNING id) "
            "SELECT * FROM inner_cte) SELECT * FROM outer_cte"
        )
        assert f.kind == WRITE
        assert rel("orders") in f.writes
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_merge_in_a_cte(self) -> None:
        f = facts(
            "WITH m AS (MERGE INTO stock s USING deliveries d ON s.item = d.item "
            "WHEN MATCHED THEN DELETE RETURNING s.item) SELECT * FROM m"
        )
        assert f.kind == WRITE
        assert rel("stock") in f.writes
