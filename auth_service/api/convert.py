"""Conversions between the contract's messages (and call metadata) and the domain's values."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
from woes.auth.v1 import audit_pb2 as apb
from woes.auth.v1 import resources_pb2 as res
from woes.auth.v1 import test_credentials_pb2 as tpb

from auth_service.domain.audit import StoredAuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import FieldViolation, InvalidArgument
from auth_service.domain.exposure import Exposure, WorkspaceSettings
from auth_service.domain.keys.records import KeyRecord, Principal
from auth_service.domain.test_credentials import TestCredentialRecord
from auth_service.domain.tokens import SERVICE_KINDS, KeyKind
from auth_service.domain.validation import REQUEST_ID_RE

_KIND_TO_PB = {
    KeyKind.SERVER: res.KEY_KIND_SERVER,
    KeyKind.WIDGET: res.KEY_KIND_WIDGET,
    KeyKind.ADMIN: res.KEY_KIND_ADMIN,
    KeyKind.INTERNAL: res.KEY_KIND_INTERNAL,
}


_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


_STATE_TO_PB = {
    "active": res.KEY_STATE_ACTIVE,
    "revoked": res.KEY_STATE_REVOKED,
    "expired": res.KEY_STATE_EXPIRED,
    "rotated": res.KEY_STATE_ROTATED,
}


def set_time(field, value) -> None:
    if value is not None:
        field.FromDatetime(value)


def key_to_pb(record: KeyRecord) -> res.Key:
    """Metadata only: the record's digest never leaves the domain, nor the internal permissions of
    an admin or internal key (its ``scopes``; shown only by ``woes-auth service-keys list``)."""
    key = res.Key(
        key_id=record.key_id,
        workspace_id=record.workspace_id,
        kind=_KIND_TO_PB[record.kind],
        display_name=record.display_name,
        scopes=() if record.kind in SERVICE_KINDS else record.scopes,
        state=_STATE_TO_PB[record.state_at(utcnow()).value],
        rotated_to=record.rotated_to,
        rotated_from=record.rotated_from,
        hint=record.hint,
        allowed_origins=record.allowed_origins,
        revoke_reason=record.revoke_reason,
        use_count=record.use_count,
        last_caller=record.last_caller,
    )
    set_time(key.create_time, record.create_time)
    set_time(key.expire_time, record.expire_time)
    set_time(key.revoke_time, record.revoke_time)
    set_time(key.grace_expire_time, record.grace_expire_time)
    set_time(key.last_used_time, record.last_used_time)
    return key


def principal_to_pb(principal: Principal) -> res.Principal:
    out = res.Principal(
        key_id=principal.key_id,
        workspace_id=principal.workspace_id,
        kind=_KIND_TO_PB[principal.kind],
        scopes=principal.scopes,
    )
    set_time(out.expire_time, principal.expire_time)
    return out


def kind_from_pb(value: int) -> KeyKind | None:
    return _KIND_FROM_PB.get(value)


TC_KIND_TO_PB = {
    "bearer_token": tpb.TEST_CREDENTIAL_KIND_BEARER_TOKEN,
    "api_key": tpb.TEST_CREDENTIAL_KIND_API_KEY,
    "basic_auth": tpb.TEST_CREDENTIAL_KIND_BASIC_AUTH,
    "oauth_client_secret": tpb.TEST_CREDENTIAL_KIND_OAUTH_CLIENT_SECRET,
    "other": tpb.TEST_CREDENTIAL_KIND_OTHER,
}


TC_KIND_FROM_PB = {v: k for k, v in TC_KIND_TO_PB.items()}


def test_credential_to_pb(r: TestCredentialRecord) -> tpb.TestCredential:
    """Metadata only: the sealed material never leaves the domain."""
    out = tpb.TestCredential(
        credential_id=r.credential_id,
        workspace_id=r.workspace_id,
        name=r.name,
        kind=TC_KIND_TO_PB.get(r.kind, tpb.TEST_CREDENTIAL_KIND_UNSPECIFIED),
        target_base_url=r.target_base_url,
        created_by=r.created_by,
        updated_by=r.updated_by,
        reveal_count=r.reveal_count,
        kek_id=r.sealed.kek_id,
    )
    set_time(out.create_time, r.create_time)
    set_time(out.update_time, r.update_time)
    set_time(out.last_reveal_time, r.last_reveal_time)
    return out


test_credential_to_pb.__test__ = False  # type: ignore[attr-defined]


def audit_event_to_pb(e: StoredAuditEvent) -> apb.AuditEvent:
    out = apb.AuditEvent(
        id=e.id,
        actor=e.actor,
        action=e.action,
        outcome=e.outcome,
        key_id=e.key_id,
        workspace_id=e.workspace_id,
        request_id=e.request_id,
        detail=e.detail,
    )
    set_time(out.time, e.time)
    return out


def exposure_to_pb(e: Exposure) -> apb.KeyExposure:
    out = apb.KeyExposure(exposed=True, seen_at=e.where, auto_revoked=e.auto_revoked)
    set_time(out.first_exposed_time, e.first_time)
    set_time(out.last_exposed_time, e.last_time)
    return out


def settings_to_pb(s: WorkspaceSettings) -> apb.WorkspaceSettings:
    out = apb.WorkspaceSettings(
        workspace_id=s.workspace_id, auto_revoke_exposed=s.auto_revoke_exposed, updated_by=s.updated_by
    )
    set_time(out.update_time, s.update_time)
    return out


def grace_of(request) -> timedelta | None:
    if not request.HasField("grace_period"):
        return None
    d = request.grace_period
    if d.seconds < 0 or d.nanos < 0:
        return timedelta(seconds=-1)
    return timedelta(seconds=min(d.seconds, 10**9), microseconds=d.nanos // 1000)


# -- call metadata --------------------------------------------------------------------


def bearer(context: grpc.ServicerContext) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def request_id_of(context: grpc.ServicerContext) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == "x-request-id" and isinstance(value, str) and REQUEST_ID_RE.fullmatch(value):
            return value
    return uuid.uuid4().hex[:16]


def request_id(context: grpc.ServicerContext) -> str:
    """The caller's ``x-request-id`` for an audit row (``""`` when none); a malformed one is refused."""
    for name, value in context.invocation_metadata() or ():
        if name == "x-request-id" and isinstance(value, str):
            if not REQUEST_ID_RE.fullmatch(value):
                raise InvalidArgument(FieldViolation("x-request-id", "at most 64 characters of A-Z a-z 0-9 _ . : -"))
            return value
    return ""
