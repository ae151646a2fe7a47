"""Shared fixtures: real S3 servers (tests/fixtures/servers.py), databases (database.py) and a
private PostgreSQL cluster that fault tests may restart (private_postgres.py)."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.database",
    "tests.fixtures.private_postgres",
]
