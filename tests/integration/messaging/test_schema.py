"""The migration helper creates exactly the tables the outbox, relay and inbox use."""

from __future__ import annotations

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, create_engine, inspect, text

from payrail.messaging.schema import (
    create_messaging_tables,
    drop_messaging_tables,
    messaging_tables,
)
from tests.integration.messaging.support import unique


def _shape(conn: Connection, schema: str) -> dict[str, object]:
    inspector = inspect(conn)
    return {
        table: (
            [
                (c["name"], str(c["type"]), c["nullable"])
                for c in inspector.get_columns(table, schema)
            ],
            inspector.get_pk_constraint(table, schema)["constrained_columns"],
            sorted(
                (
                    i["name"],
                    tuple(i["column_names"]),
                    str(i["dialect_options"].get("postgresql_where")),
                )
                for i in inspector.get_indexes(table, schema)
            ),
        )
        for table in sorted(inspector.get_table_names(schema))
    }


def test_the_migration_builds_the_same_tables_as_the_metadata_and_drops_them(
    database_url: str,
) -> None:
    migrated, reference = unique("mig_"), unique("ref_")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for schema in (migrated, reference):
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            create_messaging_tables(Operations(MigrationContext.configure(conn)), migrated)
            messaging_tables(reference).metadata.create_all(conn)
            shape = _shape(conn, migrated)
            assert set(shape) == {"inbox", "outbox"}
            assert shape == _shape(conn, reference)
            drop_messaging_tables(Operations(MigrationContext.configure(conn)), migrated)
            assert inspect(conn).get_table_names(migrated) == []
            for schema in (migrated, reference):
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()
