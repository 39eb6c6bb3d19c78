"""The cache key under which MySQL texts differing only in literals share an analysis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbward.sql.mysql_analyze import analyze_mysql
from dbward.sql.mysql_shape import literal_key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("SELECT c FROM sbtest1 WHERE id=4711", "SELECT c FROM sbtest1 WHERE id=?"),
        ("SELECT * FROM t WHERE a='x\\'; DROP' AND b=1", "SELECT * FROM t WHERE a=? AND b=?"),
        ("SELECT t1.a FROM t1 WHERE x=1.5e3", "SELECT t1.a FROM t1 WHERE x=?"),
        ('select `a``b` from t where c = "q"', "select `a``b` from t where c = ?"),
        ("SELECT x FROM t WHERE y = 0x1F OR z = X'0A'", "SELECT x FROM t WHERE y = ? OR z = ?"),
        ("INSERT INTO t2 VALUES (1, 'a''b', .5)", "INSERT INTO t2 VALUES (?, ?, ?)"),
    ],
)
def test_literals_become_placeholders(text: str, key: str) -> None:
    assert literal_key(text) == key


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1 -- c",
        "SELECT 1--1",
        "SELECT /*! 1 */ 2",
        "SELECT 1 # x",
        "SELECT 'a -- b' FROM t",  # a comment marker anywhere: no key
        "SELECT naïve FROM t WHERE a = 1",  # not ASCII outside a literal
        "SELECT a FROM t WHERE b = 'unterminated",
        "SELECT a FROM t",  # no literal: the exact text is the key
    ],
)
def test_texts_not_plain_enough_have_no_key(text: str) -> None:
    assert literal_key(text) is None


def test_backslash_escapes_follow_the_sql_mode() -> None:
    text = "SELECT a FROM t WHERE b = 'x\\' AND c = 'y'"
    # With backslash escapes (MySQL's default) \' does not end the string: the text's
    # last quote opens a string that never ends, so there is no key.
    assert literal_key(text) is None
    # Under NO_BACKSLASH_ESCAPES the first string ends at the quote after the backslash.
    assert literal_key(text, no_backslash_escapes=True) == "SELECT a FROM t WHERE b = ? AND c = ?"


_values = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f)),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20).map(
        lambda s: "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"
    ),
)
_templates = st.sampled_from(
    [
        "SELECT id, email FROM people WHERE id = {0}",
        "UPDATE people SET email = {0} WHERE id = {1}",
        "DELETE FROM people WHERE id = {0} OR {1} = {1}",
        "INSERT INTO people (id, email) VALUES ({0}, {1})",
        "SELECT * FROM a JOIN b ON a.x = b.y WHERE a.z IN ({0}, {1}) LIMIT 10",
    ]
)


@settings(max_examples=200, deadline=None)
@given(_templates, _values, _values, _values, _values)
def test_texts_with_one_key_have_the_same_facts(
    template: str, a: str, b: str, c: str, d: str
) -> None:
    first, second = template.format(a, b), template.format(c, d)
    key = literal_key(first)
    if key is None or key != literal_key(second):
        return
    one, two = analyze_mysql(first, database="app"), analyze_mysql(second, database="app")
    if one.error is None and one.cacheable:
        assert one.statements == two.statements
