"""Alembic environment of the reconciler schema (see payrail.db.migrate)."""

from payrail.db import run_migrations_online

run_migrations_online()
