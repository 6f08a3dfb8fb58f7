"""Alembic migration environment of the woes-auth schema (run through ``auth_service.store.migrate``)."""
