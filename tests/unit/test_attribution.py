"""Agent metadata from token claims, application_name and sqlcommenter statement comments."""

from __future__ import annotations

import pytest

from dbward.identity.attribution import (
    MAX_KEYS,
    MAX_VALUE,
    from_application_name,
    from_claims,
    from_statement,
    merged,
)


def test_claims_map_to_attributes_and_ignore_everything_else() -> None:
    claims = {"sub": "x", "exp": 1, "agent_name": "reporter", "model": "gpt-4o", "run_id": 42}
    assert from_claims(claims) == {"agent": "reporter", "model": "gpt-4o", "run_id": "42"}
    assert from_claims({"model": True, "pipeline": ["a"], "agent": ""}) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "SELECT 1 /*model='gpt-4o',traceparent='00-4bf9-00f0-01'*/",
            {"model": "gpt-4o", "traceparent": "00-4bf9-00f0-01"},
        ),
        (
            "SELECT 1 /*route='%2Fpolls%201',run_id='r%2D7'*/",
            {"route": "/polls 1", "run_id": "r-7"},
        ),
        ("/*a='1'*/ SELECT 1 /*model='m'*/", {"model": "m"}),  # the last comment counts
        ("SELECT 1 /* an ordinary comment */", {}),
        ("SELECT 1 /*model=gpt*/", {}),  # not quoted: not sqlcommenter
        ("SELECT '*/'", {}),
        ("SELECT 1", {}),
    ],
)
def test_sqlcommenter_tags(text: str, expected: dict[str, str]) -> None:
    assert from_statement(text) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("agent=reporter,model=gpt-4o", {"agent": "reporter", "model": "gpt-4o"}),
        ("agent=reporter; pipeline=nightly", {"agent": "reporter", "pipeline": "nightly"}),
        ("model='x%20y'", {"model": "x y"}),
        ("psql", {}),
        ("my app = 1 + 1", {}),
        ("", {}),
        (None, {}),
    ],
)
def test_application_name(name: str | None, expected: dict[str, str]) -> None:
    assert from_application_name(name) == expected


def test_bounded_keys_and_values() -> None:
    many = ",".join(f"k{i}='{'v' * 500}'" for i in range(40))
    tags = from_statement(f"SELECT 1 /*{many}*/")
    assert len(tags) == MAX_KEYS
    assert all(len(v) == MAX_VALUE for v in tags.values())


def test_later_sources_refine_earlier_ones() -> None:
    assert merged({"agent": "a", "model": "m1"}, {"model": "m2"}) == {"agent": "a", "model": "m2"}
