"""Revisions of the woes-auth schema, oldest first (``0001_initial`` ...)."""
