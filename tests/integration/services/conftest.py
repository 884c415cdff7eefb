"""Fixtures of the services tests; they and the helpers live in services_support (imported by
name: `from conftest import ...` would find whichever conftest was imported last)."""

from services_support import bus, postgres_database, services  # noqa: F401
