"""Alembic environment: runs migrations on the connection handed over by ``auth_service.store.migrate``.

The target metadata is ``auth_service.store.migrate.target_metadata()``: every
table of the service, so ``alembic`` autogenerate compares against all of them.
Run with no connection (offline, ``woes-auth db upgrade --sql``) it renders SQL
for the configured URL instead of executing it.
"""

from __future__ import annotations

from alembic import context

from auth_service.store.migrate import configure_context_options, target_metadata

config = context.config
options = configure_context_options(target_metadata())

if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
