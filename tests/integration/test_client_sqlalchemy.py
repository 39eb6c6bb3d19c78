"""SQLAlchemy 2 (Core and ORM) through dbward, with the psycopg and the asyncpg drivers."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import statements, unique


def upstream_rows(dbward: Dbward, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dbward.upstream.dsn()) as conn:
        return conn.execute(query).fetchall()


def make_model(table: str) -> tuple[type[DeclarativeBase], type[Any]]:
    class Base(DeclarativeBase):
        pass

    class Customer(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(200), unique=True)
        name: Mapped[str | None] = mapped_column(String(100))
        balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
        created: Mapped[datetime.datetime] = mapped_column(server_default=func.now())

    return Base, Customer


def check_reflection(columns: list[dict[str, Any]], pk: dict[str, Any], uniques: Any) -> None:
    assert [c["name"] for c in columns] == ["id", "email", "name", "balance", "created"]
    types = {c["name"]: str(c["type"]) for c in columns}
    assert types["email"] == "VARCHAR(200)"
    assert types["balance"] == "NUMERIC(12, 2)"
    assert types["created"] == "TIMESTAMP"
    nullable = {c["name"]: c["nullable"] for c in columns}
    assert nullable == {
        "id": False,
        "email": False,
        "name": True,
        "balance": False,
        "created": False,
    }
    assert pk["constrained_columns"] == ["id"]
    assert [u["column_names"] for u in uniques] == [["email"]]


def test_orm_with_psycopg(dbward: Dbward) -> None:
    table = unique("sa_customers")
    Base, Customer = make_model(table)
    engine = create_engine(dbward.url("sa-psycopg", scheme="postgresql+psycopg"))
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all(
                [
                    Customer(email=f"user{i}@example.com", name=f"User {i}", balance=Decimal(i))
                    for i in range(1, 6)
                ]
            )
            session.commit()
            rich = session.scalars(
                select(Customer).where(Customer.balance >= 3).order_by(Customer.id)
            ).all()
            assert [c.email for c in rich] == [f"user{i}@example.com" for i in (3, 4, 5)]
            assert all(isinstance(c.created, datetime.datetime) for c in rich)

            rich[0].name = "Renamed"
            session.execute(
                update(Customer).where(Customer.id == rich[1].id).values(balance=Decimal("99.50"))
            )
            session.delete(rich[2])
            session.commit()

            remaining = session.execute(
                select(Customer.email, Customer.name, Customer.balance).order_by(Customer.id)
            ).all()
        assert [tuple(r) for r in remaining] == [
            ("user1@example.com", "User 1", Decimal("1.00")),
            ("user2@example.com", "User 2", Decimal("2.00")),
            ("user3@example.com", "Renamed", Decimal("3.00")),
            ("user4@example.com", "User 4", Decimal("99.50")),
        ]

        inspector = inspect(engine)
        assert table in inspector.get_table_names()
        check_reflection(
            inspector.get_columns(table),
            inspector.get_pk_constraint(table),
            inspector.get_unique_constraints(table),
        )
    finally:
        engine.dispose()

    assert upstream_rows(dbward, f"SELECT count(*) FROM {table}") == [(4,)]
    mine = statements(dbward, identity="sa-psycopg")
    [create] = [s for s in mine if s["data"]["statement"].startswith(f"\nCREATE TABLE {table}")]
    assert create["data"]["tags"] == ["CREATE TABLE"]
    inserts = [s for s in mine if s["data"]["statement"].startswith(f"INSERT INTO {table}")]
    assert sum(s["data"]["rows"] for s in inserts) == 5
    updates = [s for s in mine if s["data"]["statement"].startswith(f"UPDATE {table}")]
    assert sorted(s["data"]["rows"] for s in updates) == [1, 1]
    [delete] = [s for s in mine if s["data"]["statement"].startswith(f"DELETE FROM {table}")]
    assert delete["data"]["rows"] == 1
    assert "WHERE" in delete["data"]["statement"]
    assert any("pg_catalog.pg_attribute" in s["data"]["statement"] for s in mine)  # reflection
    assert all("sqlstate" not in s["data"] for s in mine)


def test_core_with_psycopg(dbward: Dbward) -> None:
    metadata = MetaData()
    events = Table(
        unique("sa_events"),
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(20), nullable=False),
        Column("weight", Integer),
    )
    engine = create_engine(dbward.url("sa-core", scheme="postgresql+psycopg"))
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(events), [{"kind": "a" if i % 2 else "b", "weight": i} for i in range(50)]
            )
        with engine.connect() as conn:
            totals = conn.execute(
                select(events.c.kind, func.count(), func.sum(events.c.weight))
                .group_by(events.c.kind)
                .order_by(events.c.kind)
            ).all()
            heavy = conn.execute(
                text(f"SELECT count(*) FROM {events.name} WHERE weight > :limit"), {"limit": 40}
            ).scalar_one()
            reflected = Table(events.name, MetaData(), autoload_with=conn)
    finally:
        engine.dispose()
    assert [tuple(t) for t in totals] == [("a", 25, 625), ("b", 25, 600)]
    assert heavy == 9
    assert [c.name for c in reflected.columns] == ["id", "kind", "weight"]
    assert reflected.c.id.primary_key
    [count] = statements(dbward, "WHERE weight > $1", identity="sa-core")
    assert count["data"]["protocol"] == "extended"
    assert count["data"]["rows"] == 1


def test_orm_with_asyncpg(dbward: Dbward) -> None:
    table = unique("sa_async")
    Base, Customer = make_model(table)
    user = "sa-asyncpg"
    url = f"postgresql+asyncpg://{user}:{dbward.token(user)}@127.0.0.1:{dbward.port}/app"

    async def main() -> tuple[list[Any], list[dict[str, Any]], dict[str, Any], Any]:
        engine = create_async_engine(url, connect_args={"ssl": "require"})
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            async with sessions() as session:
                session.add_all(
                    [
                        Customer(email=f"a{i}@example.org", name=f"A{i}", balance=Decimal(i * 10))
                        for i in range(1, 4)
                    ]
                )
                await session.commit()
            async with sessions() as session:
                await update_and_delete(session, Customer)
            async with sessions() as session:
                rows = (
                    await session.execute(
                        select(Customer.email, Customer.name, Customer.balance).order_by(
                            Customer.id
                        )
                    )
                ).all()
            async with engine.connect() as conn:
                columns, pk, uniques = await conn.run_sync(
                    lambda sync: (
                        inspect(sync).get_columns(table),
                        inspect(sync).get_pk_constraint(table),
                        inspect(sync).get_unique_constraints(table),
                    )
                )
            return [tuple(r) for r in rows], columns, pk, uniques
        finally:
            await engine.dispose()

    rows, columns, pk, uniques = asyncio.run(main())
    assert rows == [
        ("a1@example.org", "A1 (vip)", Decimal("10.00")),
        ("a3@example.org", "A3", Decimal("30.00")),
    ]
    check_reflection(columns, pk, uniques)

    mine = statements(dbward, identity=user)
    assert {s["data"]["protocol"] for s in mine if s["data"]["statement"] != "BEGIN"} <= {
        "extended",
        "simple",
    }
    [create] = [s for s in mine if f"CREATE TABLE {table}" in s["data"]["statement"]]
    assert create["data"]["tags"] == ["CREATE TABLE"]
    inserts = [s for s in mine if s["data"]["statement"].startswith(f"INSERT INTO {table}")]
    assert sum(s["data"]["rows"] for s in inserts) == 3
    [delete] = [s for s in mine if s["data"]["statement"].startswith(f"DELETE FROM {table}")]
    assert delete["data"]["rows"] == 1
    assert all("sqlstate" not in s["data"] for s in mine)
    assert upstream_rows(dbward, f"SELECT count(*) FROM {table}") == [(2,)]


async def update_and_delete(session: AsyncSession, customer: type[Any]) -> None:
    first = await session.scalar(select(customer).where(customer.email == "a1@example.org"))
    second = await session.scalar(select(customer).where(customer.email == "a2@example.org"))
    assert first is not None
    assert second is not None
    first.name = f"{first.name} (vip)"
    await session.delete(second)
    await session.commit()


UNMASKED = """\
version: 1
masking:
  unmask:
    - name: orm-tests-see-their-data
      match: {identity: "sa-*"}
      entities: [email, person_name]
"""


@pytest.fixture(scope="module")
def dbward(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    """dbward whose test identity may see the emails these tests write and read back."""
    server = start_dbward(tmp_path_factory.mktemp("dbward-orm"), upstream_db, policy=UNMASKED)
    yield server
    stop_dbward(server)
