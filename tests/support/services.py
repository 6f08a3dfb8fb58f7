"""Helpers of the conversation, test credential, audit and exposure tests."""

from __future__ import annotations

import base64
import binascii
import secrets
import sqlite3

import grpc
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from woes.auth.v1 import audit_pb2 as apb
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import permissions
from auth_service.domain.keys import service_keys
from tests import conftest
from tests.support.rich_errors import RichError, rich_error


def new_plaintext(label: str = "tc") -> str:
    """A test credential material, recorded for the log scan."""
    value = f"{label}-{secrets.token_urlsafe(24)}"
    conftest.OTHER_SECRETS.add(value)
    return value


def issue(srv, workspace: str, kind=res.KEY_KIND_SERVER, **fields):
    if kind == res.KEY_KIND_SERVER and "scopes" not in fields:
        fields["scopes"] = ["conversations:read"]
    return srv.stub.IssueKey(pb.IssueKeyRequest(workspace_id=workspace, kind=kind, **fields), metadata=srv.admin_md)


def internal_md(srv, *held: str, name: str = "internal service") -> tuple[tuple[str, str], ...]:
    """Metadata of a new internal credential holding ``held`` (made as bootstrap-internal makes it)."""
    issued = service_keys.bootstrap_internal(srv.manager, name, held)
    return (("authorization", f"Bearer {issued.secret}"),)


def revealer_md(srv) -> tuple[tuple[str, str], ...]:
    """Metadata of a new internal credential holding the reveal permission (the test runner's)."""
    return internal_md(srv, permissions.REVEAL_TEST_CREDENTIALS, name="test runner")


def widget_backend_md(srv) -> tuple[tuple[str, str], ...]:
    """Metadata of a new internal credential holding the conversation secret permission (the widget backend's)."""
    return internal_md(srv, permissions.ISSUE_CONVERSATION_SECRETS, name="widget backend")


class Errors:
    """Calls RPCs that must fail and keeps every error (for the secret scans)."""

    def __init__(self):
        self.seen: list[RichError] = []

    def __call__(self, fn, *args, **kwargs) -> RichError:
        try:
            fn(*args, **kwargs)
        except grpc.RpcError as err:
            out = rich_error(err)
            self.seen.append(out)
            return out
        raise AssertionError("the call succeeded but was expected to fail")

    def texts(self) -> list[str]:
        return [f"{e.message} {e.reason} {e.metadata} {e.violations}" for e in self.seen]


def audit_events(srv, **filters) -> list:
    out, token = [], ""
    while True:
        page = srv.stub.ListAuditEvents(
            apb.ListAuditEventsRequest(page_size=500, page_token=token, **filters), metadata=srv.admin_md
        )
        out += list(page.events)
        token = page.next_page_token
        if not token:
            return out


def secret_forms() -> list[tuple[str, str]]:
    """Every secret of the run in the forms a dump could hold it: as text, and binary keys as hex."""
    forms = []
    for s in conftest.MINTED | conftest.OTHER_SECRETS:
        forms.append((s, s))
        forms.append((s, s.encode().hex()))
        try:
            raw = base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            forms.append((s, raw.hex()))
            forms.append((s, raw.hex().upper()))
    return forms


def leaked_in(texts: list[str]) -> list[str]:
    joined = "\n".join(texts)
    return sorted({s[:12] + "..." for s, form in secret_forms() if form in joined})


def dump_database(url: str) -> str:
    """SQL text of every table: iterdump for SQLite, SELECT * of every table for PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    engine = create_engine(url)
    try:
        lines = []
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    values = [v.hex() if isinstance(v, bytes | memoryview) else repr(v) for v in row]
                    lines.append(f"{table}: {values}")
        return "\n".join(lines)
    finally:
        engine.dispose()
