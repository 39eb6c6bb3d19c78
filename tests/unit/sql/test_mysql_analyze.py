"""analyze_mysql(): MySQL/MariaDB statements described with the facts PostgreSQL's get.

One policy file governs both engines, so the same guardrails must fire for a
MySQL statement as for its PostgreSQL counterpart (the parity table below).
Names follow MySQL: a relation's schema is its database (the session's
current one for unqualified names), table names keep their case, column and
function names are kept in lower case.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.identity.models import IdentityKind
from dbward.policy.decide import Subject, decide
from dbward.policy.loader import default_policy
from dbward.sql.analyze import analyze
from dbward.sql.facts import Analysis, Column, Relation, Risk, StatementFacts, StatementKind
from dbward.sql.mysql_analyze import analyze_mysql

READ = StatementKind.READ
WRITE = StatementKind.WRITE
DDL = StatementKind.DDL
PRIVILEGE = StatementKind.PRIVILEGE
ADMIN = StatementKind.ADMIN
TRANSACTION = StatementKind.TRANSACTION
SESSION = StatementKind.SESSION
UNKNOWN = StatementKind.UNKNOWN


def facts(sql: str, database: str | None = None) -> StatementFacts:
    """The facts of a string holding exactly one statement that parses."""
    analysis = analyze_mysql(sql, database=database)
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
    return [str(c) for c in f.columns]


def error(sql: str, **options: object) -> str:
    analysis = analyze_mysql(sql, **options)  # type: ignore[arg-type]
    assert analysis.error, f"{sql!r} was not refused: {analysis.statements}"
    assert analysis.statements == ()
    assert analysis.shape == ""
    return analysis.error


# --------------------------------------------------------------------------- commands and kinds

COMMANDS = [
    # what clients send on their own
    ("SELECT @@version_comment LIMIT 1", "SELECT", READ),
    ("select @@version_comment limit 1", "SELECT", READ),
    ("SELECT DATABASE()", "SELECT", READ),
    ("SELECT VERSION(), @@session.autocommit, @@global.max_connections", "SELECT", READ),
    ("SELECT @@session.transaction_read_only", "SELECT", READ),
    ("SHOW DATABASES", "SHOW", READ),
    ("SHOW TABLES", "SHOW", READ),
    ("SHOW FULL TABLES FROM `app` LIKE 'x%'", "SHOW", READ),
    ("SHOW VARIABLES LIKE 'sql_mode'", "SHOW", READ),
    ("SHOW SESSION VARIABLES LIKE 'lower_case_table_names'", "SHOW", READ),
    ("SHOW GLOBAL STATUS", "SHOW", READ),
    ("SHOW COLUMNS FROM t", "SHOW", READ),
    ("SHOW FULL COLUMNS FROM t FROM db", "SHOW", READ),
    ("SHOW CREATE TABLE db.t", "SHOW", READ),
    ("SHOW INDEX FROM t", "SHOW", READ),
    ("SHOW WARNINGS", "SHOW", READ),
    ("SHOW ERRORS", "SHOW", READ),
    ("SHOW STATUS", "SHOW", READ),
    ("SHOW COLLATION", "SHOW", READ),
    ("SHOW GRANTS", "SHOW", READ),
    ("SHOW GRANTS FOR 'u'@'%'", "SHOW", READ),
    ("SHOW PROCESSLIST", "SHOW", ADMIN),
    ("SHOW FULL PROCESSLIST", "SHOW", ADMIN),
    ("SHOW ENGINE INNODB STATUS", "SHOW", ADMIN),
    ("SHOW REPLICA STATUS", "SHOW", ADMIN),
    ("SHOW BINARY LOGS", "SHOW", ADMIN),
    ("SHOW CREATE USER u", "SHOW", ADMIN),
    ("DESCRIBE t", "DESCRIBE", READ),
    ("DESC db.t", "DESCRIBE", READ),
    ("DESCRIBE t col", "DESCRIBE", READ),
    ("EXPLAIN t", "DESCRIBE", READ),
    ("EXPLAIN SELECT * FROM t", "EXPLAIN", READ),
    ("EXPLAIN FORMAT=JSON SELECT * FROM t", "EXPLAIN", READ),
    ("EXPLAIN FORMAT = TREE DELETE FROM t", "EXPLAIN", READ),
    ("EXPLAIN ANALYZE SELECT * FROM t", "EXPLAIN ANALYZE", READ),
    ("EXPLAIN FOR CONNECTION 12", "EXPLAIN", ADMIN),
    ("ANALYZE SELECT * FROM t", "EXPLAIN ANALYZE", READ),
    # reads and writes
    ("SELECT * FROM t", "SELECT", READ),
    ("TABLE t", "SELECT", READ),
    ("VALUES ROW(1, 2)", "SELECT", READ),
    ("(SELECT a FROM t) UNION (SELECT b FROM u)", "SELECT", READ),
    ("WITH c AS (SELECT 1) SELECT * FROM c", "SELECT", READ),
    ("SELECT * FROM t FOR UPDATE", "SELECT", READ),
    ("SELECT * FROM t LOCK IN SHARE MODE", "SELECT", READ),
    ("DO SLEEP(1)", "DO", READ),
    ("HANDLER t READ FIRST", "HANDLER", READ),
    ("HANDLER t CLOSE", "HANDLER", SESSION),
    ("HELP 'contents'", "HELP", READ),
    ("INSERT INTO t (a) VALUES (1)", "INSERT", WRITE),
    ("INSERT IGNORE INTO t VALUES (1)", "INSERT", WRITE),
    ("INSERT LOW_PRIORITY INTO t VALUES (1)", "INSERT", WRITE),
    ("INSERT HIGH_PRIORITY IGNORE INTO t VALUES (1)", "INSERT", WRITE),
    ("INSERT t SET a = 1", "INSERT", WRITE),
    ("REPLACE INTO t (a) VALUES (1)", "REPLACE", WRITE),
    ("REPLACE t SET a = 1", "REPLACE", WRITE),
    ("UPDATE t SET a = 1 WHERE id = 2", "UPDATE", WRITE),
    ("UPDATE LOW_PRIORITY IGNORE t SET a = 1 WHERE id = 2", "UPDATE", WRITE),
    ("DELETE FROM t WHERE id = 1", "DELETE", WRITE),
    ("DELETE LOW_PRIORITY QUICK IGNORE FROM t WHERE id = 1", "DELETE", WRITE),
    ("WITH d AS (SELECT id FROM u) DELETE FROM t WHERE id IN (SELECT id FROM d)", "DELETE", WRITE),
    ("LOAD DATA INFILE '/tmp/x' INTO TABLE t", "LOAD DATA", WRITE),
    ("LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t", "LOAD DATA LOCAL", WRITE),
    ("LOAD XML LOCAL INFILE 'x.xml' INTO TABLE t", "LOAD XML LOCAL", WRITE),
    ("EXPLAIN ANALYZE DELETE t FROM t JOIN u ON t.a = u.a", "EXPLAIN ANALYZE", WRITE),
    # schema
    ("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT) ENGINE=InnoDB", "CREATE TABLE", DDL),
    ("CREATE TEMPORARY TABLE t (id INT)", "CREATE TABLE", DDL),
    ("CREATE TABLE t LIKE s", "CREATE TABLE", DDL),
    ("CREATE TABLE t AS SELECT * FROM s", "CREATE TABLE AS", DDL),
    ("CREATE TABLE t SELECT * FROM s", "CREATE TABLE AS", DDL),
    ("CREATE OR REPLACE VIEW v AS SELECT a FROM t", "CREATE VIEW", DDL),
    ("ALTER VIEW v AS SELECT a FROM t", "ALTER VIEW", DDL),
    ("CREATE UNIQUE INDEX i ON t (a)", "CREATE INDEX", DDL),
    ("CREATE DATABASE IF NOT EXISTS d CHARACTER SET utf8mb4", "CREATE DATABASE", DDL),
    ("CREATE SCHEMA d", "CREATE SCHEMA", DDL),
    ("ALTER DATABASE d CHARACTER SET utf8mb4", "ALTER DATABASE", DDL),
    ("ALTER TABLE t ADD COLUMN c INT", "ALTER TABLE", DDL),
    ("ALTER TABLE t MODIFY c BIGINT", "ALTER TABLE", DDL),
    ("DROP TABLE t", "DROP TABLE", DDL),
    ("DROP TEMPORARY TABLE t", "DROP TABLE", DDL),
    ("DROP VIEW v", "DROP VIEW", DDL),
    ("DROP INDEX i ON t", "DROP INDEX", DDL),
    ("DROP DATABASE d", "DROP DATABASE", DDL),
    ("DROP SCHEMA IF EXISTS d", "DROP SCHEMA", DDL),
    ("TRUNCATE t", "TRUNCATE", DDL),
    ("TRUNCATE TABLE t", "TRUNCATE", DDL),
    ("RENAME TABLE a TO b", "RENAME TABLE", DDL),
    ("CREATE PROCEDURE p() SELECT 1", "CREATE PROCEDURE", DDL),
    ("CREATE FUNCTION f(a INT) RETURNS INT DETERMINISTIC RETURN a + 1", "CREATE FUNCTION", DDL),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", "CREATE TRIGGER", DDL),
    ("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM t WHERE id < 5", "CREATE EVENT", DDL),
    ("DROP PROCEDURE IF EXISTS p", "DROP PROCEDURE", DDL),
    ("DROP FUNCTION f", "DROP FUNCTION", DDL),
    ("DROP TRIGGER tr", "DROP TRIGGER", DDL),
    ("DROP EVENT e", "DROP EVENT", DDL),
    ("IMPORT TABLE FROM '/tmp/t.sdi'", "IMPORT TABLE", DDL),
    # privileges
    ("GRANT SELECT ON t TO u", "GRANT", PRIVILEGE),
    ("GRANT SELECT ON db.* TO 'u'@'%'", "GRANT", PRIVILEGE),
    ("REVOKE SELECT ON t FROM u", "REVOKE", PRIVILEGE),
    ("REVOKE ALL PRIVILEGES, GRANT OPTION FROM u", "REVOKE", PRIVILEGE),
    ("GRANT r1, r2 TO u", "GRANT ROLE", PRIVILEGE),
    ("REVOKE r1 FROM u", "REVOKE ROLE", PRIVILEGE),
    ("CREATE USER 'u'@'%' IDENTIFIED BY 'secret'", "CREATE USER", PRIVILEGE),
    ("ALTER USER u IDENTIFIED BY 'secret'", "ALTER USER", PRIVILEGE),
    ("DROP USER 'u'@'%'", "DROP USER", PRIVILEGE),
    ("RENAME USER a TO b", "RENAME USER", PRIVILEGE),
    ("CREATE ROLE r", "CREATE ROLE", PRIVILEGE),
    ("DROP ROLE r", "DROP ROLE", PRIVILEGE),
    ("SET PASSWORD = 'secret'", "SET PASSWORD", PRIVILEGE),
    ("SET PASSWORD FOR 'u'@'%' = 'secret'", "SET PASSWORD", PRIVILEGE),
    ("SET DEFAULT ROLE ALL TO u", "SET DEFAULT ROLE", PRIVILEGE),
    # session
    ("USE app", "USE", SESSION),
    ("SET NAMES utf8mb4", "SET", SESSION),
    ("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", "SET", SESSION),
    ("SET CHARACTER SET utf8", "SET", SESSION),
    ("SET autocommit = 0", "SET", SESSION),
    ("SET SESSION sql_mode = 'TRADITIONAL'", "SET", SESSION),
    ("SET @@session.sql_mode = 'TRADITIONAL'", "SET", SESSION),
    ("SET @x = 1", "SET", SESSION),
    ("SET @x := 1, @y = 2", "SET", SESSION),
    ("SET ROLE r", "SET", SESSION),
    ("PREPARE s FROM @sql", "PREPARE", UNKNOWN),
    ("EXECUTE s USING @a", "EXECUTE", UNKNOWN),
    ("DEALLOCATE PREPARE s", "DEALLOCATE", SESSION),
    ("DROP PREPARE s", "DEALLOCATE", SESSION),
    ("GET DIAGNOSTICS @n = NUMBER", "GET DIAGNOSTICS", SESSION),
    ("CALL p(1, 2)", "CALL", UNKNOWN),
    # transactions
    ("START TRANSACTION", "START TRANSACTION", TRANSACTION),
    ("START TRANSACTION READ ONLY", "START TRANSACTION", TRANSACTION),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", "START TRANSACTION", TRANSACTION),
    ("BEGIN", "BEGIN", TRANSACTION),
    ("BEGIN WORK", "BEGIN", TRANSACTION),
    ("COMMIT", "COMMIT", TRANSACTION),
    ("COMMIT WORK AND NO CHAIN", "COMMIT", TRANSACTION),
    ("ROLLBACK", "ROLLBACK", TRANSACTION),
    ("ROLLBACK TO SAVEPOINT s", "ROLLBACK TO SAVEPOINT", TRANSACTION),
    ("ROLLBACK WORK TO s", "ROLLBACK TO SAVEPOINT", TRANSACTION),
    ("SAVEPOINT s", "SAVEPOINT", TRANSACTION),
    ("RELEASE SAVEPOINT s", "RELEASE", TRANSACTION),
    ("XA START 'x'", "XA", TRANSACTION),
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "SET", TRANSACTION),
    ("SET SESSION TRANSACTION READ ONLY", "SET", TRANSACTION),
    # administration
    ("SET GLOBAL max_connections = 10", "SET", ADMIN),
    ("SET PERSIST max_connections = 10", "SET", ADMIN),
    ("SET GLOBAL TRANSACTION READ ONLY", "SET", ADMIN),
    ("KILL 123", "KILL", ADMIN),
    ("KILL QUERY 123", "KILL", ADMIN),
    ("SHUTDOWN", "SHUTDOWN", ADMIN),
    ("RESTART", "RESTART", ADMIN),
    ("FLUSH PRIVILEGES", "FLUSH", ADMIN),
    ("FLUSH TABLES WITH READ LOCK", "FLUSH", ADMIN),
    ("RESET MASTER", "RESET", ADMIN),
    ("RESET PERSIST", "RESET PERSIST", ADMIN),
    ("PURGE BINARY LOGS TO 'binlog.000002'", "PURGE", ADMIN),
    ("INSTALL PLUGIN p SONAME 'p.so'", "INSTALL", ADMIN),
    ("UNINSTALL PLUGIN p", "UNINSTALL", ADMIN),
    ("CHANGE MASTER TO MASTER_HOST = 'h'", "CHANGE MASTER", ADMIN),
    ("CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'h'", "CHANGE REPLICATION", ADMIN),
    ("START SLAVE", "START REPLICA", ADMIN),
    ("STOP REPLICA", "STOP REPLICA", ADMIN),
    ("LOCK TABLES t READ", "LOCK", ADMIN),
    ("LOCK TABLE t WRITE", "LOCK", ADMIN),
    ("UNLOCK TABLES", "UNLOCK", ADMIN),
    ("ANALYZE TABLE t", "ANALYZE", ADMIN),
    ("OPTIMIZE TABLE t", "OPTIMIZE TABLE", ADMIN),
    ("CHECK TABLE t QUICK", "CHECK TABLE", ADMIN),
    ("REPAIR TABLE t", "REPAIR TABLE", ADMIN),
    ("CHECKSUM TABLE t", "CHECKSUM TABLE", ADMIN),
    ("CACHE INDEX t IN c", "CACHE INDEX", ADMIN),
    ("CLONE INSTANCE FROM 'u'@'h':3306 IDENTIFIED BY 'p'", "CLONE", ADMIN),
    ("BINLOG 'AAAA'", "BINLOG", UNKNOWN),
]


@pytest.mark.parametrize(("sql", "command", "kind"), COMMANDS)
def test_command_and_kind(sql: str, command: str, kind: StatementKind) -> None:
    f = facts(sql)
    assert (f.command, f.kind) == (command, kind)


# --------------------------------------------------------------------------- the analysis object


def test_the_shape_hides_the_literals() -> None:
    analysis = analyze_mysql("SELECT * FROM t WHERE email = 'bob@example.com' AND n > 3")
    assert isinstance(analysis, Analysis)
    assert analysis.shape == "SELECT * FROM t WHERE email = ? AND n > ?"
    assert analysis.error is None
    assert analysis.cacheable


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a = 2"),
        ("SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = 'it''s \\' here'"),
        ('SELECT * FROM t WHERE a = "x"', "SELECT * FROM t WHERE a = 'y'"),
        ("SELECT X'41', 0x41, b'1', N'x', 1.5e3", "SELECT X'42', 0x42, b'0', N'y', 2"),
        ("SELECT a FROM t LIMIT 10", "SELECT a FROM t LIMIT 20"),
        ("DELETE FROM t WHERE 1 = 1", "DELETE FROM t WHERE 1 = 0"),
        ("KILL 12", "KILL 13"),
        ("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES (3, 'c'), (4, 'd')"),
        ("/* model='x' */ SELECT 1", "/* model='y' */ SELECT 2"),
        ("SELECT 1 -- a comment", "SELECT 2 # another"),
        ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ 1", "SELECT /*+ MAX_EXECUTION_TIME(5) */ 2"),
    ],
)
def test_texts_that_differ_in_literals_share_a_shape(one: str, other: str) -> None:
    a, b = analyze_mysql(one), analyze_mysql(other)
    assert a.error is None
    assert b.error is None
    assert a.shape == b.shape
    assert "'" not in a.shape
    assert "model" not in a.shape
    assert a.statements == b.statements


def test_the_shape_keeps_quoted_names_and_statement_separators() -> None:
    analysis = analyze_mysql("SELECT `a b` FROM `db`.`t` WHERE `x` = 'secret'; DELETE FROM t")
    assert analysis.shape == "SELECT `a b` FROM `db`.`t` WHERE `x` = ?; DELETE FROM t"


def test_a_quoted_name_and_a_string_do_not_share_a_shape() -> None:
    assert analyze_mysql("SELECT `a` FROM t").shape != analyze_mysql("SELECT 'a' FROM t").shape


@pytest.mark.parametrize(
    "sql",
    [
        "SET @x = 1",
        "SET autocommit = 0",
        "SET NAMES utf8mb4",
        "PREPARE s FROM 'SELECT 1'",
        "EXECUTE s",
        "DEALLOCATE PREPARE s",
        "USE app",
        "SELECT 1; SET @x = 2",
    ],
)
def test_literal_dependent_facts_are_not_cacheable(sql: str) -> None:
    analysis = analyze_mysql(sql)
    assert analysis.error is None
    assert analysis.cacheable is False


def test_analyze_is_pure_and_deterministic() -> None:
    text = "UPDATE a JOIN b ON a.id = b.id SET a.x = b.y WHERE b.z = 1"
    assert analyze_mysql(text, database="app") == analyze_mysql(text, database="app")


def test_facts_are_frozen() -> None:
    f = facts("SELECT 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.command = "DELETE"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "   ", ";", ";;", "-- just a comment", "# hash", "/* c */ ;"])
def test_an_empty_string_has_no_statements_and_no_error(text: str) -> None:
    analysis = analyze_mysql(text)
    assert analysis.error is None
    assert analysis.statements == ()


def test_each_part_of_a_multi_statement_string_in_order() -> None:
    analysis = analyze_mysql("SELECT * FROM a; DELETE FROM b; TRUNCATE TABLE c;;")
    assert [s.command for s in analysis.statements] == ["SELECT", "DELETE", "TRUNCATE"]
    assert [s.kind for s in analysis.statements] == [READ, WRITE, DDL]
    assert analysis.statements[0].risks == frozenset()
    assert analysis.risks == {Risk.UNBOUNDED_WRITE, Risk.DESTRUCTIVE_DDL}


def test_a_transaction_block_in_one_string() -> None:
    analysis = analyze_mysql("START TRANSACTION; UPDATE t SET a = 1 WHERE id = 7; COMMIT;")
    assert [s.command for s in analysis.statements] == ["START TRANSACTION", "UPDATE", "COMMIT"]
    assert analysis.statements[1].where is True
    assert analysis.risks == frozenset()


# --------------------------------------------------------------------------- names


def test_unqualified_names_take_the_current_database() -> None:
    assert facts("SELECT * FROM orders", database="shop").reads == (Relation("orders", "shop"),)


def test_unqualified_names_without_a_database_have_no_schema() -> None:
    assert facts("SELECT * FROM orders").reads == (Relation("orders", None),)


def test_qualified_names_keep_their_database() -> None:
    f = facts("SELECT * FROM sales.orders", database="shop")
    assert f.reads == (Relation("orders", "sales"),)


def test_backtick_names_are_names() -> None:
    f = facts("SELECT `a b`.`Total` FROM `my db`.`a b`", database="shop")
    assert f.reads == (Relation("a b", "my db"),)
    assert cols(f) == ["my db.a b.total"]


def test_table_names_keep_their_case() -> None:
    f = facts("SELECT * FROM Sales.ORDERS JOIN `Items` ON 1 = 1")
    assert f.reads == (Relation("ORDERS", "Sales"), Relation("Items"))


def test_a_keyword_used_as_a_table_name_keeps_its_case() -> None:
    f = facts("DELETE FROM user WHERE status = 1")
    assert f.writes == (Relation("user"),)
    assert facts("LOCK TABLES Status READ").reads == (Relation("Status"),)


def test_column_and_function_names_are_lower_case() -> None:
    f = facts("SELECT Email, `Name`, COUNT(*), Lower(x) FROM customers")
    assert {"customers.email", "customers.name", "customers.x"} <= set(cols(f))
    assert {"count", "lower"} <= set(f.functions)


def test_use_changes_the_database_of_what_follows() -> None:
    analysis = analyze_mysql("SELECT * FROM t; USE other; SELECT * FROM t", database="app")
    first, use, last = analysis.statements
    assert first.reads == (Relation("t", "app"),)
    assert use.settings == (("database", "other"),)
    assert (use.command, use.kind) == ("USE", SESSION)
    assert last.reads == (Relation("t", "other"),)


def test_use_with_a_quoted_name() -> None:
    assert facts("USE `my db`").settings == (("database", "my db"),)


def test_dual_and_cte_names_are_not_relations() -> None:
    assert facts("SELECT 1 FROM DUAL").reads == ()
    f = facts("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent JOIN customers")
    assert set(f.reads) == rels("orders", "customers")


def test_a_qualified_name_is_never_a_cte() -> None:
    f = facts("WITH orders AS (SELECT 1) SELECT * FROM orders, app.orders")
    assert f.reads == (rel("app.orders"),)


def test_recursive_cte() -> None:
    f = facts(
        "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT * FROM r JOIN nodes"
    )
    assert f.reads == (rel("nodes"),)


def test_information_schema_is_read_like_any_database() -> None:
    f = facts("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
    assert f.reads == (Relation("TABLES", "information_schema"),)
    assert "database" in f.functions


# --------------------------------------------------------------------------- SELECT


class TestSelect:
    def test_joins_subqueries_and_derived_tables(self) -> None:
        f = facts(
            "SELECT o.id, (SELECT max(p.paid) FROM payments p WHERE p.order_id = o.id) "
            "FROM orders o JOIN customers c ON c.id = o.customer_id "
            "LEFT JOIN (SELECT * FROM regions) r ON r.id = c.region_id "
            "WHERE o.id IN (SELECT order_id FROM lines) AND EXISTS (SELECT 1 FROM flags)",
            database="shop",
        )
        names = ("payments", "orders", "customers", "regions", "lines", "flags")
        assert set(f.reads) == {Relation(n, "shop") for n in names}
        assert f.writes == ()
        assert f.kind == READ

    def test_parenthesised_and_comma_joins(self) -> None:
        f = facts("SELECT * FROM (a JOIN b ON a.x = b.x) JOIN c ON c.y = a.y, d")
        assert set(f.reads) == rels("a", "b", "c", "d")

    def test_union(self) -> None:
        f = facts("SELECT a FROM t UNION ALL SELECT b FROM db2.u")
        assert set(f.reads) == rels("t", "db2.u")

    def test_columns_resolve_through_aliases(self) -> None:
        f = facts("SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id")
        assert {"customers.email", "orders.total", "orders.customer_id", "customers.id"} <= set(
            cols(f)
        )

    def test_star_is_a_column_of_the_table(self) -> None:
        assert cols(facts("SELECT * FROM t")) == ["t.*"]
        assert cols(facts("SELECT t.* FROM t")) == ["t.*"]

    def test_count_star_is_no_column(self) -> None:
        assert cols(facts("SELECT COUNT(*) FROM t")) == []

    def test_partition_and_index_hints_are_not_columns(self) -> None:
        f = facts("SELECT a FROM t PARTITION (p0) FORCE INDEX (i)")
        assert cols(f) == ["t.a"]

    def test_optimizer_hints_are_ignored(self) -> None:
        f = facts("SELECT /*+ BKA(t) MAX_EXECUTION_TIME(10) */ a FROM t")
        assert f.functions == ()
        assert cols(f) == ["t.a"]

    def test_select_into_variables_is_a_read(self) -> None:
        for sql in (
            "SELECT a INTO @v FROM t",
            "SELECT a FROM t INTO @v",
            "SELECT a, b INTO @x, @y FROM t",
        ):
            f = facts(sql)
            assert (f.command, f.kind, f.reads, f.writes) == ("SELECT", READ, (rel("t"),), ())

    def test_qualified_stored_function(self) -> None:
        assert "billing.total" in facts("SELECT billing.Total(1)").functions

    def test_sequences_are_writes(self) -> None:
        assert facts("SELECT NEXTVAL(order_ids)").kind == WRITE


# --------------------------------------------------------------------------- INSERT / REPLACE


class TestInsert:
    def test_insert_values(self) -> None:
        f = facts("INSERT INTO t (a, b) VALUES (1, 2)", database="app")
        assert f.writes == (Relation("t", "app"),)
        assert f.reads == ()
        assert [str(c) for c in f.written] == ["app.t.a", "app.t.b"]
        assert f.where is None

    def test_insert_set(self) -> None:
        f = facts("INSERT INTO t SET a = 1, b = (SELECT max(x) FROM s)")
        assert f.writes == (rel("t"),)
        assert f.reads == (rel("s"),)
        assert [str(c) for c in f.written] == ["t.a", "t.b"]

    def test_insert_select_reads_the_select_tables(self) -> None:
        f = facts(
            "INSERT INTO archive.orders SELECT * FROM orders o JOIN customers c ON c.id = o.cid"
        )
        assert f.writes == (rel("archive.orders"),)
        assert set(f.reads) == rels("orders", "customers")

    def test_on_duplicate_key_update(self) -> None:
        f = facts(
            "INSERT INTO counters (k, n) VALUES ('a', 1) AS new "
            "ON DUPLICATE KEY UPDATE n = counters.n + new.n, seen = (SELECT now() FROM limits)"
        )
        assert (f.command, f.kind) == ("INSERT", WRITE)
        assert f.writes == (rel("counters"),)
        assert f.reads == (rel("limits"),)
        assert {"counters.k", "counters.n", "counters.seen"} == {str(c) for c in f.written}
        assert f.where is None
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_replace_is_an_insert(self) -> None:
        f = facts("REPLACE INTO t (a) SELECT b FROM s")
        assert (f.command, f.kind) == ("REPLACE", WRITE)
        assert (f.writes, f.reads) == ((rel("t"),), (rel("s"),))
        assert [str(c) for c in f.written] == ["t.a"]

    def test_insert_table(self) -> None:
        f = facts("INSERT INTO t TABLE s")
        assert (f.writes, f.reads) == ((rel("t"),), (rel("s"),))


# --------------------------------------------------------------------------- UPDATE / DELETE


WHERE_CASES = [
    ("DELETE FROM t", False),
    ("DELETE FROM t WHERE id = 1", True),
    ("DELETE FROM t WHERE id = ?", True),
    ("DELETE FROM t WHERE id IN (SELECT id FROM u)", True),
    ("DELETE FROM t WHERE 1=1", False),
    ("DELETE FROM t WHERE 1 = 0", False),
    ("DELETE FROM t WHERE true", False),
    ("DELETE FROM t WHERE 1", False),
    ("DELETE FROM t WHERE ?", False),
    ("DELETE FROM t WHERE 'a' = 'a'", False),
    ("DELETE FROM t WHERE id = id", False),
    ("DELETE FROM t WHERE `ID` = t.id", False),
    ("DELETE FROM t WHERE id <=> id", False),
    ("DELETE FROM t WHERE id >= id", False),
    ("DELETE FROM t WHERE id = 5 OR 1=1", False),
    ("DELETE FROM t WHERE 1=1 OR id = 5", False),
    ("DELETE FROM t WHERE id = 5 OR TRUE", False),
    ("DELETE FROM t WHERE active OR NOT active", False),
    ("DELETE FROM t WHERE a IS NULL OR a IS NOT NULL", False),
    ("DELETE FROM t WHERE (id = 5)", True),
    ("DELETE FROM t WHERE 1=1 AND id = 5", True),
    ("DELETE FROM t WHERE NOT (id = 5)", True),
    ("DELETE FROM t WHERE id = 5 OR id = 6", True),
    ("DELETE FROM t WHERE EXISTS (SELECT 1 FROM u)", False),
    ("DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", True),
    ("DELETE FROM t ORDER BY id LIMIT 10", False),
    ("DELETE FROM t -- WHERE id = 5", False),
    ("DELETE FROM t /* WHERE id = 5 */", False),
    ("UPDATE t SET a = 1", False),
    ("UPDATE t SET a = 'WHERE id = 5'", False),
    ("UPDATE t SET a = 1 WHERE 1=1", False),
    ("UPDATE t SET a = 1 WHERE id = 2", True),
    ("UPDATE t SET a = a + 1 ORDER BY id DESC LIMIT 1", False),
    # multi-table: an inner join's condition limits the rows as a WHERE would
    ("UPDATE a JOIN b ON a.id = b.id SET a.x = b.y", True),
    ("UPDATE a JOIN b USING (id) SET a.x = b.y", True),
    ("UPDATE a JOIN b ON 1 = 1 SET a.x = b.y", False),
    ("UPDATE a LEFT JOIN b ON a.id = b.id SET a.x = 1", False),
    ("UPDATE a, b SET a.x = b.y", False),
    ("UPDATE a, b SET a.x = b.y WHERE a.id = b.id", True),
    ("DELETE a FROM a JOIN b ON a.id = b.id", True),
    ("DELETE a FROM a LEFT JOIN b ON a.id = b.id", False),
    ("DELETE a FROM a LEFT JOIN b ON a.id = b.id WHERE b.id IS NULL", True),
    ("DELETE a, b FROM a CROSS JOIN b", False),
    ("DELETE FROM a USING a JOIN b ON a.id = b.id", True),
    ("DELETE FROM a USING a, b", False),
]


@pytest.mark.parametrize(("sql", "bounded"), WHERE_CASES)
def test_where(sql: str, bounded: bool) -> None:
    f = facts(sql)
    assert f.where is bounded
    assert (Risk.UNBOUNDED_WRITE in f.risks) is not bounded


class TestUpdate:
    def test_update(self) -> None:
        f = facts("UPDATE t SET a = 1, b = lower(b) WHERE id = 2", database="app")
        assert f.writes == (Relation("t", "app"),)
        assert f.reads == ()
        assert [str(c) for c in f.written] == ["app.t.a", "app.t.b"]
        assert {"app.t.id", "app.t.b"} <= set(cols(f))
        assert "lower" in f.functions

    def test_multi_table_update_writes_only_the_assigned_tables(self) -> None:
        f = facts("UPDATE orders o JOIN customers c ON c.id = o.cid SET o.status = c.tier")
        assert f.writes == (rel("orders"),)
        assert f.reads == (rel("customers"),)
        assert [str(c) for c in f.written] == ["orders.status"]

    def test_multi_table_update_of_both(self) -> None:
        f = facts("UPDATE a, b AS bb SET a.x = 1, bb.y = 2 WHERE a.id = bb.id")
        assert set(f.writes) == rels("a", "b")
        assert f.reads == ()

    def test_an_unqualified_column_of_several_tables_counts_for_all(self) -> None:
        f = facts("UPDATE a JOIN b ON a.id = b.id SET x = 1")
        assert set(f.writes) == rels("a", "b")
        assert f.written == (Column("x", None),)

    def test_update_with_a_subquery(self) -> None:
        f = facts("UPDATE t SET total = (SELECT sum(n) FROM lines) WHERE id IN (SELECT id FROM u)")
        assert f.writes == (rel("t"),)
        assert set(f.reads) == rels("lines", "u")

    def test_update_with_cte(self) -> None:
        f = facts(
            "WITH d AS (SELECT id FROM old) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM d)"
        )
        assert (f.command, f.writes, f.reads) == ("UPDATE", (rel("t"),), (rel("old"),))


class TestDelete:
    def test_delete(self) -> None:
        f = facts("DELETE FROM t WHERE id = 1", database="app")
        assert f.writes == (Relation("t", "app"),)
        assert f.reads == ()

    def test_delete_with_an_alias(self) -> None:
        f = facts("DELETE FROM t AS x WHERE x.id = 1")
        assert f.writes == (rel("t"),)
        assert cols(f) == ["t.id"]

    def test_multi_table_delete_writes_its_targets(self) -> None:
        f = facts("DELETE o FROM orders AS o JOIN customers c ON c.id = o.cid WHERE c.gone")
        assert f.writes == (rel("orders"),)
        assert f.reads == (rel("customers"),)

    def test_multi_table_delete_of_several(self) -> None:
        f = facts("DELETE t1, t2 FROM t1 INNER JOIN t2 INNER JOIN t3 WHERE t1.id = t2.id")
        assert set(f.writes) == rels("t1", "t2")
        assert f.reads == (rel("t3"),)

    def test_delete_using(self) -> None:
        f = facts("DELETE FROM t1, db.t2 USING t1 JOIN db.t2 JOIN t3 WHERE t1.id = t2.id")
        assert set(f.writes) == rels("t1", "db.t2")
        assert f.reads == (rel("t3"),)

    def test_delete_with_a_subquery(self) -> None:
        f = facts("DELETE FROM t WHERE cid IN (SELECT id FROM customers WHERE gone)")
        assert (f.writes, f.reads) == ((rel("t"),), (rel("customers"),))


# --------------------------------------------------------------------------- DDL


class TestDdl:
    def test_create_table(self) -> None:
        f = facts("CREATE TABLE IF NOT EXISTS db.t (id INT, u INT REFERENCES users (id))")
        assert f.writes == (rel("db.t"),)
        assert f.reads == (rel("users"),)
        assert f.creates_temp == ()
        assert f.risks == frozenset()

    def test_create_table_like_and_as(self) -> None:
        assert facts("CREATE TABLE t LIKE s").reads == (rel("s"),)
        f = facts("CREATE TABLE t AS SELECT a FROM s JOIN u")
        assert (f.writes, set(f.reads)) == ((rel("t"),), rels("s", "u"))

    def test_create_view(self) -> None:
        f = facts("CREATE VIEW v (x) AS SELECT a FROM t WITH CASCADED CHECK OPTION", database="d")
        assert f.writes == (Relation("v", "d"),)
        assert f.reads == (Relation("t", "d"),)
        assert f.risks == frozenset()

    @pytest.mark.parametrize(
        "sql",
        [
            "CREATE DEFINER = `root`@`%` VIEW v AS SELECT 1",
            "CREATE SQL SECURITY DEFINER VIEW v AS SELECT 1",
            "CREATE DEFINER = CURRENT_USER() PROCEDURE p() SELECT 1",
            "ALTER DEFINER = admin@localhost VIEW v AS SELECT 1",
        ],
    )
    def test_running_as_another_account_is_a_privilege_change(self, sql: str) -> None:
        assert Risk.PRIVILEGE_CHANGE in facts(sql).risks

    def test_create_index_reads_its_table(self) -> None:
        assert facts("CREATE UNIQUE INDEX i USING BTREE ON db.t (a)").reads == (rel("db.t"),)

    @pytest.mark.parametrize(
        ("sql", "destroys"),
        [
            ("ALTER TABLE t ADD COLUMN c INT", False),
            ("ALTER TABLE t DROP COLUMN c", True),
            ("ALTER TABLE t DROP c, ADD d INT", True),
            ("ALTER TABLE t ADD d INT, DROP COLUMN c", True),
            ("ALTER TABLE t DROP INDEX i, DROP PRIMARY KEY, DROP FOREIGN KEY fk", False),
            ("ALTER TABLE t DROP CHECK c, DROP CONSTRAINT k", False),
            ("ALTER TABLE t ALTER COLUMN c DROP DEFAULT", False),
            ("ALTER TABLE t DROP PARTITION p0", True),
            ("ALTER TABLE t TRUNCATE PARTITION p0", True),
            ("ALTER TABLE t DISCARD TABLESPACE", True),
            ("ALTER TABLE t ENGINE = InnoDB", False),
            ("ALTER TABLE t REMOVE PARTITIONING", False),
            ("ALTER TABLE t ALGORITHM = INPLACE, DROP COLUMN IF EXISTS c", True),
        ],
    )
    def test_alter_table(self, sql: str, destroys: bool) -> None:
        f = facts(sql)
        assert (f.command, f.kind) == ("ALTER TABLE", DDL)
        assert rel("t") in f.writes
        assert (Risk.DESTRUCTIVE_DDL in f.risks) is destroys

    def test_alter_table_rename_and_exchange_write_both(self) -> None:
        assert set(facts("ALTER TABLE t RENAME TO db.u").writes) == rels("t", "db.u")
        assert set(facts("ALTER TABLE t RENAME u").writes) == rels("t", "u")
        assert facts("ALTER TABLE t RENAME COLUMN a TO b").writes == (rel("t"),)
        f = facts("ALTER TABLE t EXCHANGE PARTITION p WITH TABLE other")
        assert set(f.writes) == rels("t", "other")

    def test_alter_table_references(self) -> None:
        f = facts("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES other (id)")
        assert f.reads == (rel("other"),)

    @pytest.mark.parametrize(
        ("sql", "targets"),
        [
            ("DROP TABLE t", ["t"]),
            ("DROP TABLE IF EXISTS a, db.b CASCADE", ["a", "db.b"]),
            ("DROP TABLE `Users`", ["Users"]),
            ("DROP/**/TABLE x", ["x"]),
            ("drop table x", ["x"]),
            ("DROP DATABASE d", ["d.*"]),
            ("DROP SCHEMA IF EXISTS d", ["d.*"]),
            ("TRUNCATE t", ["t"]),
            ("TRUNCATE TABLE db.t", ["db.t"]),
        ],
    )
    def test_destructive_ddl(self, sql: str, targets: list[str]) -> None:
        f = facts(sql)
        assert f.kind == DDL
        assert Risk.DESTRUCTIVE_DDL in f.risks
        assert list(f.writes) == [rel(t) for t in targets]

    @pytest.mark.parametrize(
        "sql",
        ["DROP VIEW v", "DROP INDEX i ON t", "DROP TEMPORARY TABLE t", "DROP PROCEDURE p"],
    )
    def test_drops_that_keep_data(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == DDL
        assert Risk.DESTRUCTIVE_DDL not in f.risks

    def test_rename_table_writes_every_name(self) -> None:
        f = facts("RENAME TABLE a TO b, c TO db.d")
        assert list(f.writes) == [rel("a"), rel("b"), rel("c"), rel("db.d")]

    def test_temporary_tables_created_in_the_string(self) -> None:
        analysis = analyze_mysql(
            "CREATE TEMPORARY TABLE tmp (id INT); DELETE FROM tmp; TRUNCATE tmp; "
            "DROP TABLE tmp; TRUNCATE tmp",
            database="app",
        )
        create, delete, truncate, drop, again = analysis.statements
        assert create.creates_temp == ("tmp",)
        assert delete.where is False
        assert Risk.UNBOUNDED_WRITE not in delete.risks
        assert Risk.DESTRUCTIVE_DDL not in truncate.risks
        assert Risk.DESTRUCTIVE_DDL not in drop.risks
        # once the temporary table is dropped, tmp is the base table again
        assert Risk.DESTRUCTIVE_DDL in again.risks

    def test_a_stored_program_body_is_folded_in(self) -> None:
        f = facts("CREATE PROCEDURE purge() DELETE FROM orders")
        assert (f.command, f.kind) == ("CREATE PROCEDURE", DDL)
        assert rel("orders") in f.writes
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_a_procedure_with_parameters_and_characteristics(self) -> None:
        f = facts(
            "CREATE DEFINER=`root`@`%` PROCEDURE p(IN a INT, OUT b VARCHAR(10)) "
            "COMMENT 'x' MODIFIES SQL DATA SQL SECURITY INVOKER DELETE FROM t WHERE id = a"
        )
        assert f.writes == (rel("t"),)
        assert Risk.UNBOUNDED_WRITE not in f.risks

    def test_a_function_body(self) -> None:
        f = facts(
            "CREATE FUNCTION f(a INT) RETURNS VARCHAR(10) CHARACTER SET utf8mb4 DETERMINISTIC "
            "RETURN (SELECT name FROM t WHERE id = a)"
        )
        assert f.reads == (rel("t"),)

    def test_trigger_and_event_bodies(self) -> None:
        f = facts("CREATE TRIGGER tr AFTER DELETE ON t FOR EACH ROW DELETE FROM audit")
        assert set(f.writes) == rels("t", "audit")
        assert Risk.UNBOUNDED_WRITE in f.risks
        f = facts("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT LOAD_FILE('/etc/passwd')")
        assert Risk.SERVER_FILE_ACCESS in f.risks

    def test_a_trigger_setting_its_row_changes_no_configuration(self) -> None:
        f = facts("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = lower(NEW.a)")
        assert f.risks == frozenset()

    def test_a_loadable_function_runs_a_shared_library(self) -> None:
        for sql in (
            "CREATE FUNCTION f RETURNS STRING SONAME 'udf.so'",
            "CREATE AGGREGATE FUNCTION f RETURNS REAL SONAME 'udf.so'",
        ):
            assert Risk.PROGRAM_EXECUTION in facts(sql).risks


# --------------------------------------------------------------------------- privileges


@pytest.mark.parametrize(
    ("sql", "escalates"),
    [
        ("GRANT SELECT ON t TO u", False),
        ("GRANT SELECT, INSERT ON db.* TO 'u'@'%'", False),
        ("GRANT ALL PRIVILEGES ON db.* TO u", False),
        ("GRANT SELECT (a, b), UPDATE (a) ON db.t TO u", False),
        ("GRANT EXECUTE ON PROCEDURE db.p TO u", False),
        ("GRANT USAGE ON *.* TO u", False),
        ("GRANT r1 TO u", False),
        ("GRANT ALL ON *.* TO 'u'@'%'", True),
        ("GRANT ALL PRIVILEGES ON *.* TO u", True),
        ("GRANT SUPER ON *.* TO u", True),
        ("GRANT FILE ON *.* TO u", True),
        ("GRANT PROCESS, RELOAD ON *.* TO u", True),
        ("GRANT REPLICATION SLAVE ON *.* TO u", True),
        ("GRANT SELECT ON *.* TO u", True),
        ("GRANT SYSTEM_VARIABLES_ADMIN ON *.* TO u", True),
        ("GRANT SELECT ON db.* TO u WITH GRANT OPTION", True),
        ("GRANT INSERT ON mysql.user TO u", True),
        ("GRANT SELECT ON `mysql`.* TO u", True),
        ("GRANT PROXY ON root TO u", True),
        ("REVOKE ALL ON *.* FROM u", False),
        ("REVOKE SUPER ON *.* FROM u", False),
    ],
)
def test_privilege_escalation(sql: str, escalates: bool) -> None:
    f = facts(sql)
    assert f.kind == PRIVILEGE
    assert Risk.PRIVILEGE_CHANGE in f.risks
    assert (Risk.PRIVILEGE_ESCALATION in f.risks) is escalates


def test_a_lone_star_is_every_database_only_without_a_current_one() -> None:
    assert Risk.PRIVILEGE_ESCALATION in facts("GRANT SELECT ON * TO u").risks
    assert Risk.PRIVILEGE_ESCALATION not in facts("GRANT SELECT ON * TO u", database="app").risks
    assert Risk.PRIVILEGE_ESCALATION in facts("GRANT SELECT ON * TO u", database="mysql").risks


# --------------------------------------------------------------------------- SET


class TestSet:
    def test_system_variables(self) -> None:
        f = facts("SET autocommit = 0, SESSION sql_mode = 'TRADITIONAL', @@wait_timeout = 5")
        assert (f.command, f.kind) == ("SET", SESSION)
        assert f.risks == {Risk.CONFIG_CHANGE}
        assert f.settings == (
            ("autocommit", "0"),
            ("sql_mode", "TRADITIONAL"),
            ("wait_timeout", "5"),
        )

    def test_user_variables_change_no_configuration(self) -> None:
        f = facts("SET @x = 1, @Y := 'two'")
        assert f.risks == frozenset()
        assert f.settings == (("@x", "1"), ("@y", "two"))

    def test_names_and_character_set(self) -> None:
        assert facts("SET NAMES utf8mb4").settings == (("names", "utf8mb4"),)
        assert facts("SET NAMES 'utf8mb4'").risks == {Risk.CONFIG_CHANGE}
        assert facts("SET CHARACTER SET utf8").settings == (("character_set", "utf8"),)

    def test_default_resets(self) -> None:
        assert facts("SET @@SESSION.sql_select_limit = DEFAULT").settings == (
            ("sql_select_limit", None),
        )

    def test_an_expression_reads_its_tables(self) -> None:
        f = facts("SET @pw = (SELECT password FROM users LIMIT 1)", database="app")
        assert f.reads == (Relation("users", "app"),)
        assert cols(f) == ["app.users.password"]
        assert f.settings[0][0] == "@pw"

    def test_a_function_of_a_variable(self) -> None:
        f = facts("SET sql_mode = (SELECT REPLACE(@@sql_mode, 'ONLY_FULL_GROUP_BY', ''))")
        assert "replace" in f.functions
        assert Risk.CONFIG_CHANGE in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "SET GLOBAL max_connections = 10",
            "SET @@global.max_connections = 10",
            "SET PERSIST max_connections = 10",
            "SET PERSIST_ONLY max_connections = 10",
            "SET GLOBAL a = 1, b = 2",
            "SET @x = 1, GLOBAL general_log = 'OFF'",
        ],
    )
    def test_global_variables_are_administration(self, sql: str) -> None:
        f = facts(sql)
        assert f.kind == ADMIN
        assert Risk.CONFIG_CHANGE in f.risks

    def test_set_role_is_a_role_change(self) -> None:
        assert facts("SET ROLE admin").risks == {Risk.ROLE_CHANGE}

    def test_set_statement_for(self) -> None:
        f = facts("SET STATEMENT max_statement_time = 1 FOR DELETE FROM t")
        assert (f.command, f.kind, f.writes) == ("DELETE", WRITE, (rel("t"),))
        assert {Risk.UNBOUNDED_WRITE, Risk.CONFIG_CHANGE} <= f.risks


# --------------------------------------------------------------------------- files and programs


class TestServerAccess:
    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT * FROM t INTO OUTFILE '/tmp/t.csv'",
            "SELECT * INTO OUTFILE '/tmp/t.csv' FIELDS TERMINATED BY ',' FROM t",
            "SELECT a FROM t INTO OUTFILE '/tmp/x' CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'",
            "SELECT a INTO DUMPFILE '/tmp/x' FROM t",
            "TABLE t INTO OUTFILE '/tmp/x'",
            "SELECT a FROM t UNION SELECT b FROM t INTO OUTFILE '/tmp/x'",
        ],
    )
    def test_select_into_a_server_file_is_an_export(self, sql: str) -> None:
        f = facts(sql)
        assert f.command.startswith("SELECT INTO ")
        assert f.kind == READ
        assert rel("t") in f.reads
        assert {Risk.SERVER_FILE_ACCESS, Risk.DATA_EXPORT} <= f.risks

    def test_load_data(self) -> None:
        f = facts(
            "LOAD DATA LOCAL INFILE 'x.csv' REPLACE INTO TABLE db.t CHARACTER SET utf8 "
            "FIELDS TERMINATED BY ',' IGNORE 1 LINES (a, @b) SET c = @b * 2, d = (SELECT x FROM y)"
        )
        assert (f.command, f.kind) == ("LOAD DATA LOCAL", WRITE)
        assert f.writes == (rel("db.t"),)
        assert f.reads == (rel("y"),)
        assert {str(c) for c in f.written} == {"db.t.a", "db.t.c", "db.t.d"}
        assert Risk.SERVER_FILE_ACCESS in f.risks

    def test_load_data_from_the_server(self) -> None:
        f = facts("LOAD DATA INFILE '/var/lib/mysql-files/x' INTO TABLE t PARTITION (p0) (a, b)")
        assert (f.command, f.writes) == ("LOAD DATA", (rel("t"),))
        assert Risk.SERVER_FILE_ACCESS in f.risks

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT LOAD_FILE('/etc/passwd')",
            "SELECT load_file('/etc/passwd')",
            "SELECT `load_file`('/etc/passwd')",
            "SELECT id FROM t WHERE LENGTH(LOAD_FILE('/etc/hostname')) > 0",
            "INSERT INTO loot (body) VALUES (LOAD_FILE('/etc/passwd'))",
            "UPDATE t SET body = LOAD_FILE('/etc/passwd') WHERE id = 1",
            "DO LOAD_FILE('/etc/passwd')",
            "SET @x = LOAD_FILE('/etc/passwd')",
        ],
    )
    def test_load_file(self, sql: str) -> None:
        f = facts(sql)
        assert Risk.SERVER_FILE_ACCESS in f.risks
        assert "load_file" in f.functions

    def test_a_function_named_like_a_column_is_no_call(self) -> None:
        assert facts("SELECT load_file FROM sys_exec").risks == frozenset()

    @pytest.mark.parametrize(
        ("sql", "risk"),
        [
            ("SELECT sys_exec('id')", Risk.PROGRAM_EXECUTION),
            ("INSTALL PLUGIN p SONAME 'p.so'", Risk.PROGRAM_EXECUTION),
            ("INSTALL COMPONENT 'file://component_x'", Risk.PROGRAM_EXECUTION),
            ("IMPORT TABLE FROM '/tmp/t.sdi'", Risk.SERVER_FILE_ACCESS),
            ("CLONE LOCAL DATA DIRECTORY = '/tmp/x'", Risk.SERVER_FILE_ACCESS),
            ("KILL 12", Risk.ADMIN_FUNCTION),
            ("FLUSH LOGS", Risk.ADMIN_FUNCTION),
            ("SHUTDOWN", Risk.ADMIN_FUNCTION),
            ("BINLOG 'AAAA'", Risk.DYNAMIC_SQL),
        ],
    )
    def test_server_risks(self, sql: str, risk: Risk) -> None:
        assert risk in facts(sql).risks


# --------------------------------------------------------------------------- routines and prepared


class TestPrepared:
    def test_prepare_from_a_string_has_the_facts_of_its_statement(self) -> None:
        f = facts("PREPARE purge FROM 'DELETE FROM orders'", database="app")
        assert (f.command, f.kind) == ("PREPARE", WRITE)
        assert f.prepares == "purge"
        assert f.writes == (Relation("orders", "app"),)
        assert f.where is False
        assert Risk.UNBOUNDED_WRITE in f.risks

    def test_prepare_with_placeholders(self) -> None:
        f = facts("PREPARE Q FROM 'SELECT * FROM t WHERE id = ? AND s = ?'")
        assert (f.command, f.kind, f.prepares) == ("PREPARE", READ, "q")
        assert f.reads == (rel("t"),)

    def test_prepare_from_a_variable_is_unseen(self) -> None:
        f = facts("PREPARE s FROM @sql")
        assert (f.kind, f.prepares) == (UNKNOWN, "s")
        assert Risk.DYNAMIC_SQL in f.risks

    def test_prepare_of_text_dbward_refuses_is_refused(self) -> None:
        assert "SELEC" in error("PREPARE s FROM 'SELEC 1'")
        assert "one statement" in error("PREPARE s FROM 'SELECT 1; SELECT 2'")

    def test_execute(self) -> None:
        f = facts("EXECUTE Stmt USING @a, @b")
        assert (f.command, f.kind, f.executes) == ("EXECUTE", UNKNOWN, "stmt")
        assert Risk.DYNAMIC_SQL in f.risks

    def test_deallocate(self) -> None:
        assert facts("DEALLOCATE PREPARE s").deallocates == "s"
        assert facts("DROP PREPARE S").deallocates == "s"

    def test_call(self) -> None:
        f = facts("CALL Billing.Close_Month(NOW(), (SELECT max(id) FROM orders))")
        assert (f.command, f.kind) == ("CALL", UNKNOWN)
        assert {"Billing.close_month", "now", "max"} <= set(f.functions)
        assert f.reads == (rel("orders"),)
        assert facts("CALL p").functions == ("p",)


# --------------------------------------------------------------------------- refused


UNPARSABLE = [
    "SELEC 1",
    "SELECT * FROM",
    "SELECT 1 1",
    "DELETE FROM",
    "DELETE FROM t WHERE",
    "DELETE t",
    "UPDATE t SET WHERE id = 1",
    "DROP TABLE",
    "TRUNCATE",
    "GRANT TO bob",
    "SELECT 'unterminated",
    "SELECT `unterminated",
    "SELECT /* unterminated",
    "SELECT 1; SELEC 2",
    "DELETE FROM t; DROP",
    "FOO bar",
    "BEGIN NOT ATOMIC SELECT 1; END",
    "CREATE PROCEDURE p() BEGIN DELETE FROM t; END",
    "CREATE TABLE t (a INT) IGNORE SELECT 1",
    "SHOW",
    "PREPARE s FROM CONCAT('SELECT ', 1)",
    "INSERT INTO t (a) VALUES (%s)",
    "EXPLAIN ANALYZE t",
    "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'h')",
    "DROP TABLESPACE ts",
    "SIGNAL SQLSTATE '45000'",
]


@pytest.mark.parametrize("sql", UNPARSABLE)
def test_an_unparsable_string_is_an_error_without_statements(sql: str) -> None:
    assert isinstance(error(sql), str)


def test_an_unknown_statement_is_named_in_the_error() -> None:
    assert error("FROB the widgets") == (
        "dbward cannot analyse this MySQL statement: FROB THE WIDGETS ..."
    )


def test_a_syntax_error_names_where() -> None:
    message = error("SELECT * FROM")
    assert "'FROM' (line 1, column 13)" in message
    assert "end of the statement" in message
    assert "\x1b" not in message  # no terminal escapes from sqlglot's messages


def test_an_unterminated_string_is_named() -> None:
    assert "Missing '" in error("SELECT 'abc")


def test_a_nul_byte_is_refused() -> None:
    assert "NUL" in error("SELECT 1\x00; DROP TABLE t")


@pytest.mark.parametrize(
    "sql",
    [
        "/*! DROP TABLE x */",
        "/*!50000 DROP TABLE x */",
        "/*M! DROP TABLE x */",
        "/*M!100000 DROP TABLE x */",
        "SELECT /*! 1; DROP TABLE x; */ 2",
        "SELECT 1; /*!50000 DROP TABLE x */",
        "SELECT 1 /*!, (SELECT secret FROM vault) */ FROM t",
    ],
)
def test_executable_comments_are_refused(sql: str) -> None:
    assert "executable comment" in error(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 --\u00a0 FROM t; DROP TABLE users",  # MySQL: no comment, the DROP runs
        "SELECT 1 --\x85; DROP TABLE t",
        "DROP\u00a0TABLE x",
        "SELECT\u3000 1",
        "SELECT 1 /* \u2028 */",
    ],
)
def test_spaces_mysql_does_not_count_as_spaces_are_refused(sql: str) -> None:
    assert "outside quotes" in error(sql)


def test_such_spaces_inside_quotes_are_fine() -> None:
    assert facts("SELECT 'a\u00a0b', `x\u3000y` FROM t").reads == (rel("t"),)


def test_a_brace_and_hash_are_no_comment() -> None:
    # sqlglot reads {# ... #} as a comment; MySQL reads "{" and a # comment to the end of
    # the line, then runs the next line (here an ODBC date, then the DROP).
    error("SELECT 1, {#\nd '2020-01-01'}; DROP TABLE t; #} 2")
    analysis = analyze_mysql("SELECT 1 {# x #}\n; DROP TABLE t")
    assert analysis.error or "DROP TABLE" in [s.command for s in analysis.statements]


def test_a_comment_that_only_mentions_one_is_fine() -> None:
    assert facts("SELECT 1 -- not /*! this */").command == "SELECT"


def test_deeply_nested_text_is_refused_not_raised() -> None:
    analysis = analyze_mysql("SELECT " + "(" * 5000 + "1" + ")" * 5000)
    assert analysis.error
    assert analysis.statements == ()


# --------------------------------------------------------------------------- reading as MySQL does


class TestLexicalRules:
    def test_comments_do_not_break_parsing(self) -> None:
        for sql in (
            "/* model='x' */ SELECT 1",
            "-- first\nSELECT 1",
            "# first\nSELECT 1",
            "SELECT 1 -- last",
            "SELECT /* inside */ 1",
        ):
            assert facts(sql).command == "SELECT"

    def test_a_double_dash_without_space_is_not_a_comment(self) -> None:
        # MySQL reads "1--1" as 1 - (-1), and what follows as statements
        analysis = analyze_mysql("SELECT 1--1; DROP TABLE t")
        assert [s.command for s in analysis.statements] == ["SELECT", "DROP TABLE"]
        analysis = analyze_mysql("SELECT 1 --1; DROP TABLE t")
        assert [s.command for s in analysis.statements] == ["SELECT", "DROP TABLE"]

    def test_a_hash_starts_a_comment(self) -> None:
        assert [s.command for s in analyze_mysql("DELETE FROM t # WHERE id = 5").statements] == [
            "DELETE"
        ]
        assert Risk.UNBOUNDED_WRITE in facts("DELETE FROM t # WHERE id = 5").risks

    def test_block_comments_do_not_nest(self) -> None:
        # MySQL ends the comment at the first */: the DROP runs
        analysis = analyze_mysql("/* /* */ DROP TABLE x; /* */")
        assert [s.command for s in analysis.statements] == ["DROP TABLE"]

    def test_backslash_escapes_a_quote(self) -> None:
        analysis = analyze_mysql("SELECT 'a\\'; DROP TABLE t; -- '")
        assert [s.command for s in analysis.statements] == ["SELECT"]

    def test_no_backslash_escapes_ends_the_string_at_the_quote(self) -> None:
        text = "SELECT 'a\\'; DROP TABLE t; -- '"
        analysis = analyze_mysql(text, no_backslash_escapes=True)
        assert [s.command for s in analysis.statements] == ["SELECT", "DROP TABLE"]
        assert Risk.DESTRUCTIVE_DDL in analysis.risks

    def test_a_double_quoted_text_is_a_string(self) -> None:
        f = facts('SELECT "ssn" FROM t')
        assert cols(f) == []

    def test_with_ansi_quotes_a_double_quoted_text_is_a_name(self) -> None:
        analysis = analyze_mysql('SELECT "ssn" FROM "Secrets"', ansi_quotes=True, database="app")
        f = analysis.statements[0]
        assert f.reads == (Relation("Secrets", "app"),)
        assert cols(f) == ["app.Secrets.ssn"]

    def test_strings_hold_semicolons_and_comment_markers(self) -> None:
        analysis = analyze_mysql("SELECT 'a; DROP TABLE t; -- /*!', \"b;#\" FROM t")
        assert [s.command for s in analysis.statements] == ["SELECT"]

    def test_quoted_keywords_are_names(self) -> None:
        f = facts("SELECT `select`, `from` FROM `drop`")
        assert f.reads == (rel("drop"),)
        assert set(cols(f)) == {"drop.select", "drop.from"}


# --------------------------------------------------------------------------- parity with PostgreSQL

PARITY = [
    ("DELETE FROM t", "DELETE FROM t"),
    ("DELETE FROM t WHERE id = 1", "DELETE FROM t WHERE id = 1"),
    ("DELETE FROM t WHERE 1=1", "DELETE FROM t WHERE 1=1"),
    ("DELETE FROM t WHERE id = 5 OR 1=1", "DELETE FROM t WHERE id = 5 OR 1=1"),
    ("DELETE FROM t WHERE id = id", "DELETE FROM t WHERE `id` = ID"),
    ("DELETE FROM t WHERE a OR NOT a", "DELETE FROM t WHERE a OR NOT a"),
    (
        "DELETE FROM t WHERE a IS NULL OR a IS NOT NULL",
        "DELETE FROM t WHERE a IS NULL OR a IS NOT NULL",
    ),
    ("DELETE FROM t WHERE true", "DELETE FROM t WHERE TRUE"),
    (
        "DELETE FROM t WHERE id IN (SELECT id FROM u)",
        "DELETE FROM t WHERE id IN (SELECT id FROM u)",
    ),
    ("UPDATE t SET a=1 WHERE 1=1", "UPDATE t SET a=1 WHERE 1=1"),
    ("UPDATE t SET a = 1", "UPDATE t SET a = 1"),
    ("UPDATE t SET a = 1 WHERE id = 7", "UPDATE t SET a = 1 WHERE id = 7"),
    ("UPDATE s.t SET a = 1 WHERE id = $1", "UPDATE `s`.`t` SET a = 1 WHERE id = ?"),
    ("SELECT a FROM s.t", "SELECT a FROM `s`.`t`"),
    ("SELECT * FROM t", "SELECT * FROM t"),
    ("SELECT t.* FROM t", "SELECT t.* FROM t"),
    ("SELECT count(*) FROM t WHERE b > 2", "SELECT COUNT(*) FROM t WHERE b > 2"),
    (
        "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id",
        "SELECT c.email, o.total FROM customers AS c JOIN orders AS o ON o.customer_id = c.id",
    ),
    (
        "SELECT * FROM a WHERE id IN (SELECT id FROM b)",
        "SELECT * FROM a WHERE id IN (SELECT id FROM b)",
    ),
    ("WITH c AS (SELECT a FROM t) SELECT a FROM c", "WITH c AS (SELECT a FROM t) SELECT a FROM c"),
    ("SELECT a FROM t UNION SELECT b FROM u", "SELECT a FROM t UNION SELECT b FROM u"),
    ("SELECT lower(a), now() FROM t", "SELECT LOWER(a), NOW() FROM t"),
    ("INSERT INTO t (a, b) VALUES (1, 2)", "INSERT INTO t (a, b) VALUES (1, 2)"),
    ("INSERT INTO t (a) SELECT b FROM s", "INSERT INTO t (a) SELECT b FROM s"),
    (
        "INSERT INTO archive SELECT * FROM orders WHERE created < now()",
        "INSERT INTO archive SELECT * FROM orders WHERE created < NOW()",
    ),
    ("TRUNCATE t", "TRUNCATE TABLE t"),
    ("TRUNCATE s.t", "TRUNCATE s.t"),
    ("DROP TABLE t", "DROP TABLE t"),
    ("DROP TABLE IF EXISTS a, s.b", "DROP TABLE IF EXISTS a, `s`.b"),
    ("DROP VIEW v", "DROP VIEW v"),
    ("DROP SCHEMA s", "DROP SCHEMA s"),
    ("CREATE TABLE t (id int)", "CREATE TABLE t (id INT)"),
    ("CREATE TABLE t (a int REFERENCES u (id))", "CREATE TABLE t (a INT REFERENCES u (id))"),
    ("CREATE TABLE t AS SELECT a FROM s", "CREATE TABLE t AS SELECT a FROM s"),
    ("ALTER TABLE t ADD COLUMN c int", "ALTER TABLE t ADD COLUMN c INT"),
    ("ALTER TABLE t DROP COLUMN c", "ALTER TABLE t DROP COLUMN c"),
    ("CREATE INDEX i ON t (a)", "CREATE INDEX i ON t (a)"),
    ("GRANT SELECT ON t TO u", "GRANT SELECT ON t TO u"),
    ("REVOKE SELECT ON t FROM u", "REVOKE SELECT ON t FROM u"),
    ("GRANT r TO u", "GRANT r TO u"),
    ("CREATE ROLE r", "CREATE ROLE r"),
    ("DROP ROLE r", "DROP ROLE r"),
    ("BEGIN", "BEGIN"),
    ("START TRANSACTION", "START TRANSACTION"),
    ("COMMIT", "COMMIT"),
    ("ROLLBACK", "ROLLBACK"),
    ("SAVEPOINT s", "SAVEPOINT s"),
    ("ROLLBACK TO SAVEPOINT s", "ROLLBACK TO SAVEPOINT s"),
    ("SET statement_timeout = 5", "SET max_execution_time = 5"),
    (
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    ),
    ("SET ROLE admin", "SET ROLE admin"),
    ("EXPLAIN SELECT a FROM t", "EXPLAIN SELECT a FROM t"),
    ("EXPLAIN DELETE FROM t", "EXPLAIN DELETE FROM t"),
    ("EXPLAIN ANALYZE SELECT a FROM t", "EXPLAIN ANALYZE SELECT a FROM t"),
    ("CALL p(1)", "CALL p(1)"),
    ("PREPARE q AS DELETE FROM t", "PREPARE q FROM 'DELETE FROM t'"),
    ("PREPARE q AS SELECT a FROM t WHERE id = $1", "PREPARE q FROM 'SELECT a FROM t WHERE id = ?'"),
    ("EXECUTE q", "EXECUTE q"),
    ("DEALLOCATE q", "DEALLOCATE PREPARE q"),
    ("LOCK TABLE t", "LOCK TABLES t READ"),
    ("ANALYZE t", "ANALYZE TABLE t"),
    ("SELECT 1; DELETE FROM t", "SELECT 1; DELETE FROM t"),
]


def _comparable(f: StatementFacts) -> tuple[object, ...]:
    """The facts policy decides on, with each relation's schema left aside."""

    def columns(cs: tuple[Column, ...]) -> list[tuple[str, str | None]]:
        return [(c.name, c.relation.name if c.relation else None) for c in cs]

    return (
        f.command,
        f.kind,
        f.risks,
        f.where,
        [r.name for r in f.reads],
        [r.name for r in f.writes],
        columns(f.columns),
        columns(f.written),
        f.functions,
    )


@pytest.mark.parametrize(("postgres", "mysql"), PARITY)
def test_parity_with_postgresql(postgres: str, mysql: str) -> None:
    pg, my = analyze(postgres), analyze_mysql(mysql, database="app")
    assert pg.error is None, pg.error
    assert my.error is None, my.error
    assert [_comparable(f) for f in my.statements] == [_comparable(f) for f in pg.statements]


def _subject() -> Subject:
    return Subject(
        identity="alice@example.com",
        groups=(),
        identity_kind=IdentityKind.HUMAN,
        connection="main",
        environment="production",
    )


# Counterparts that differ in spelling but must meet the same guardrail.
EQUIVALENTS = [
    *PARITY,
    ("SELECT pg_read_file('x')", "SELECT LOAD_FILE('x')"),
    ("COPY t FROM '/tmp/x'", "LOAD DATA INFILE '/tmp/x' INTO TABLE t"),
    ("COPY (SELECT a FROM t) TO '/tmp/x'", "SELECT a FROM t INTO OUTFILE '/tmp/x'"),
    ("DO $$BEGIN NULL; END$$", "PREPARE s FROM @sql"),
    ("EXECUTE unknown_prepared", "EXECUTE unknown_prepared"),
    ("ALTER ROLE u SUPERUSER", "GRANT ALL ON *.* TO u"),
    ("GRANT pg_read_server_files TO u", "GRANT FILE ON *.* TO u"),
    ("GRANT pg_read_all_data TO u", "GRANT SELECT ON *.* TO u"),
    ("DROP DATABASE d", "DROP DATABASE d"),
    ("COPY t TO PROGRAM 'gzip'", "SELECT sys_exec('gzip')"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE FROM t ORDER BY id LIMIT 5"),
]


@pytest.mark.parametrize(("postgres", "mysql"), EQUIVALENTS)
def test_the_same_guardrail_decides(postgres: str, mysql: str) -> None:
    policy = default_policy()
    pg = decide(policy, _subject(), analyze(postgres))
    my = decide(policy, _subject(), analyze_mysql(mysql, database="app"))
    assert (my.action, my.rule) == (pg.action, pg.rule)


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("DROP TABLE users", "guardrail:destructive-ddl"),
        ("drop table `Users`", "guardrail:destructive-ddl"),
        ("TRUNCATE TABLE users", "guardrail:destructive-ddl"),
        ("DROP DATABASE app", "guardrail:destructive-ddl"),
        ("ALTER TABLE users DROP COLUMN email", "guardrail:destructive-ddl"),
        ("DELETE FROM users", "guardrail:unbounded-write"),
        ("DELETE FROM users WHERE 1=1", "guardrail:unbounded-write"),
        ("UPDATE users SET active = 0 WHERE id = id", "guardrail:unbounded-write"),
        ("UPDATE users u JOIN teams t ON 1=1 SET u.active = 0", "guardrail:unbounded-write"),
        ("DELETE u FROM users u LEFT JOIN bans b ON b.uid = u.id", "guardrail:unbounded-write"),
        ("SELECT 1; DELETE FROM users", "guardrail:unbounded-write"),
        ("PREPARE s FROM 'DELETE FROM users'", "guardrail:unbounded-write"),
        ("SELECT LOAD_FILE('/etc/passwd')", "guardrail:server-access"),
        ("LOAD DATA INFILE '/tmp/x' INTO TABLE users", "guardrail:server-access"),
        ("LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE users", "guardrail:server-access"),
        ("SELECT * FROM users INTO OUTFILE '/tmp/u'", "guardrail:server-access"),
        ("INSTALL PLUGIN x SONAME 'x.so'", "guardrail:server-access"),
        ("GRANT ALL ON *.* TO 'eve'@'%'", "guardrail:privilege-escalation"),
        ("GRANT SELECT ON app.* TO eve WITH GRANT OPTION", "guardrail:privilege-escalation"),
        ("PREPARE s FROM @sql", "guardrail:dynamic-sql"),
        ("EXECUTE s", "guardrail:dynamic-sql"),
        ("BINLOG 'AAAA'", "guardrail:dynamic-sql"),
        ("/*!50000 DROP TABLE users */", "guardrail:unparsable"),
        ("SELEC 1", "guardrail:unparsable"),
        ("SELECT * FROM users WHERE id = 1", "default"),
        ("DELETE FROM users WHERE id = 1", "default"),
        ("GRANT SELECT ON app.* TO eve", "default"),
        ("CREATE TEMPORARY TABLE s (id INT); DELETE FROM s; DROP TABLE s", "default"),
    ],
)
def test_guardrails_in_production(sql: str, rule: str) -> None:
    decision = decide(default_policy(), _subject(), analyze_mysql(sql, database="app"))
    assert decision.rule == rule, decision.message


# --------------------------------------------------------------------------- never raises

_KEYWORDS = (
    "SELECT FROM WHERE DELETE UPDATE SET INSERT INTO VALUES REPLACE CREATE TABLE DROP ALTER "
    "GRANT REVOKE ON TO ALL AS JOIN LEFT USING LOAD DATA LOCAL INFILE CALL DO PREPARE "
    "EXECUTE DEALLOCATE SHOW EXPLAIN ANALYZE DESCRIBE FOR LOCK TABLES HANDLER READ WITH "
    "TEMPORARY VIEW INDEX DATABASE PROCEDURE FUNCTION TRIGGER EVENT RETURN BEGIN END "
    "DEFINER OUTFILE DUMPFILE CHARACTER GLOBAL SESSION NAMES STATEMENT TRUNCATE RENAME "
    "IF EXISTS NOT OR AND NULL IS ROW EACH SONAME PARTITION COLUMN PROXY OPTION ROLE "
    "USER KILL START TRANSACTION COMMIT ROLLBACK SAVEPOINT LIMIT ORDER BY DUAL"
)
_VOCABULARY = [
    *_KEYWORDS.split(),
    *["*", ".", ",", "(", ")", "=", ":=", "@", "@@", "t", "db.t", "a", "1", "'x'", "`q`", "?"],
    *["-", ";", "#", "-- ", "/*", "*/", "'", '"', "`", "\\", "/*+ x */", "/*!", "0x1F"],
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_never_raises(text: str) -> None:
    analysis = analyze_mysql(text)
    assert isinstance(analysis, Analysis)
    assert (analysis.error is None) or analysis.statements == ()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_VOCABULARY), max_size=25),
    st.sampled_from([None, "app"]),
    st.booleans(),
    st.booleans(),
)
def test_random_statements_never_raise(
    words: list[str], database: str | None, ansi: bool, nbe: bool
) -> None:
    analysis = analyze_mysql(
        " ".join(words), database=database, ansi_quotes=ansi, no_backslash_escapes=nbe
    )
    assert isinstance(analysis, Analysis)
    if analysis.error is None:
        assert all(isinstance(s, StatementFacts) for s in analysis.statements)
    else:
        assert analysis.statements == ()
        assert "in the parser" not in analysis.error  # sqlglot never failed inside
