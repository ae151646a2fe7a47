"""Shared fixtures: real S3 servers (tests/fixtures/servers.py) and databases (database.py)."""

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.database"]
