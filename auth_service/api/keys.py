"""The key RPCs of ``AuthService``: ``Authenticate``, ``VerifyWidgetKey`` and the admin key operations.

Nothing here decides anything: the rules live in :mod:`auth_service.domain.keys`; what works on
request and response bytes lives in :mod:`auth_service.api.fastpath`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING

from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.api.base import COUNTED_FAILURES, FeatureServicer
from auth_service.api.convert import bearer, grace_of, key_to_pb, kind_from_pb, principal_to_pb
from auth_service.api.fastpath import answer_of, authenticate_front
from auth_service.api.status import abort, grpc_status, refuse

if TYPE_CHECKING:
    from auth_service.app.services import Services
from auth_service.domain.errors import AuthError, FieldViolation, InvalidArgument
from auth_service.domain.keys.hot_path import KNOWN_UNKNOWN, WRONG_SECRET
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import Principal
from auth_service.domain.keys.rules import IssueSpec
from auth_service.ops.stats import Outcomes

log = logging.getLogger("auth_service.rpc")  # every servicer's logger (api/base.py)

_KNOWN_UNKNOWN_STATUS = grpc_status(KNOWN_UNKNOWN)


class KeyServicer(FeatureServicer):
    """The key RPCs over a :class:`CredentialManager`."""

    def __init__(self, manager: CredentialManager, services: Services | None = None):
        super().__init__(manager, services)
        # A grant of the cache probe is counted once, by the cache (VerifiedCache.probe_grants).
        self.authenticate_outcomes = Outcomes(granted_elsewhere=lambda: manager.cache.probe_grants)
        # Principals are immutable and shared by every call of a cached key: each cache entry
        # holds its response, serialized once when the entry is made (CachedKey.answer).
        manager.answer_of = answer_of
        # authenticate_cached: the front with nothing after it (one implementation of the grant).
        self._probe_alone = self.authenticate_front(lambda _request, _context, found: found)

    def _refused(self, error: AuthError) -> None:
        self.authenticate_outcomes.refused(error.reason)
        self.count_failure("Authenticate", error)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Authenticate refused: %s", error.reason, extra={"method": "Authenticate", "code": error.reason})

    def _verify(self, request: pb.AuthenticateRequest, context, end_refused=None) -> Principal | None:
        """The full rule; a refusal ends the call through ``end_refused`` (:func:`abort` by default,
        which raises; :func:`refuse` returns ``None``)."""
        try:
            principal = self.manager.authenticate(request.credential, request.required_scopes, request.caller)
        except AuthError as error:
            self._refused(error)
            return (end_refused or abort)(context, error)
        self.authenticate_outcomes.ok()
        return principal

    def Authenticate(self, request: pb.AuthenticateRequest, context):
        return pb.AuthenticateResponse(principal=principal_to_pb(self._verify(request, context)))

    def authenticate_cached(self, request: pb.AuthenticateRequest) -> bytes | AuthError | None:
        """What the caches alone decide (see :meth:`CredentialManager.authenticate_cached`): the
        serialized answer of a grant, a refusal for :meth:`authenticate_refused` to answer once the
        call gate's throttle lets it through, or ``None``. The call gate tries it first."""
        return self._probe_alone(request, None)

    def authenticate_front(
        self,
        rest: Callable,
        decode: Callable[[bytes], object] | None = None,
        refuse: Callable[[object, str, AuthError], bool] | None = None,
    ) -> Callable:
        """The call's first frame for ``Authenticate`` (see :func:`auth_service.api.fastpath.authenticate_front`)."""
        return authenticate_front(self.manager, rest, decode, refuse)

    def authenticate_refused(self, request: pb.AuthenticateRequest, context, error: AuthError) -> None:
        """Answer a refusal :meth:`authenticate_cached` found, as :meth:`authenticate_serialized` would
        (the negative cache's refusal with its status built once: this is the path of a flood)."""
        # _refused(), count_failure() and set_status() written out: every call of a flood of
        # made-up credentials comes here, and in a serving process each Python call fewer counts.
        reason = error.reason
        self.authenticate_outcomes.refused(reason)
        services = self.services
        if services is not None and error.category in COUNTED_FAILURES:
            services.failures.record("Authenticate", reason, error.metadata.get("key_id", ""))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Authenticate refused: %s", reason, extra={"method": "Authenticate", "code": reason})
        status = _KNOWN_UNKNOWN_STATUS if error is KNOWN_UNKNOWN or error is WRONG_SECRET else grpc_status(error)
        context.set_code(status.code)
        context.set_details(status.details)
        context.set_trailing_metadata(status.trailing_metadata)
        return None

    def authenticate_serialized(self, request: pb.AuthenticateRequest, context) -> bytes | None:
        """``Authenticate`` as registered with the server: the response already serialized, and a
        refusal returned rather than raised (see :func:`refuse`)."""
        principal = self._verify(request, context, refuse)
        return None if principal is None else answer_of(principal)

    def VerifyWidgetKey(self, request: pb.VerifyWidgetKeyRequest, context):
        try:
            principal = self.manager.verify_widget_key(request.public_key, request.origin)
        except AuthError as error:
            error = self.on_widget_refusal(request.public_key, error)
            log.debug(
                "VerifyWidgetKey refused: %s", error.reason, extra={"method": "VerifyWidgetKey", "code": error.reason}
            )
            return abort(context, error)
        return pb.VerifyWidgetKeyResponse(workspace_id=principal.workspace_id, key_id=principal.key_id)

    def _admin(self, context) -> str:
        return "admin:" + self.manager.authenticate_admin(bearer(context)).key_id

    def IssueKey(self, request: pb.IssueKeyRequest, context):
        try:
            actor = self._admin(context)
            spec = IssueSpec(
                workspace_id=request.workspace_id,
                kind=kind_from_pb(request.kind),
                display_name=request.display_name,
                scopes=tuple(request.scopes),
                expire_time=request.expire_time.ToDatetime(tzinfo=UTC) if request.HasField("expire_time") else None,
                allowed_origins=tuple(request.allowed_origins),
                request_id=request.request_id,
            )
            issued = self.manager.issue_key(actor, spec)
        except AuthError as error:
            log.info("IssueKey refused: %s", error.reason, extra={"method": "IssueKey", "code": error.reason})
            return abort(context, error)
        except (ValueError, OverflowError):
            return abort(context, InvalidArgument(FieldViolation("expire_time", "not a valid timestamp")))
        log.info(
            "%s key %s (%s) for workspace %s by %s",
            "replayed" if issued.replayed else "issued",
            issued.key.key_id,
            issued.key.kind.value,
            issued.key.workspace_id,
            actor,
            extra={"method": "IssueKey", "key_id": issued.key.key_id},
        )
        return pb.IssueKeyResponse(key=key_to_pb(issued.key), secret=issued.secret, replayed=issued.replayed)

    def Rotate(self, request: pb.RotateRequest, context):
        try:
            actor = self._admin(context)
            grace = grace_of(request)
            issued, previous = self.manager.rotate(actor, request.key_id, grace)
        except AuthError as error:
            log.info("Rotate refused: %s", error.reason, extra={"method": "Rotate", "code": error.reason})
            return abort(context, error)
        log.info("rotated key %s to %s by %s", previous.key_id, issued.key.key_id, actor, extra={"method": "Rotate"})
        return pb.RotateResponse(key=key_to_pb(issued.key), secret=issued.secret, previous_key=key_to_pb(previous))

    def Revoke(self, request: pb.RevokeRequest, context):
        try:
            actor = self._admin(context)
            record = self.manager.revoke(actor, request.key_id, request.reason)
        except AuthError as error:
            log.info("Revoke refused: %s", error.reason, extra={"method": "Revoke", "code": error.reason})
            return abort(context, error)
        log.info("revoked key %s by %s", record.key_id, actor, extra={"method": "Revoke", "key_id": record.key_id})
        return pb.RevokeResponse(key=key_to_pb(record))

    def GetKey(self, request: pb.GetKeyRequest, context):
        try:
            self._admin(context)
            record = self.manager.get_key(request.key_id)
        except AuthError as error:
            return abort(context, error)
        return pb.GetKeyResponse(key=key_to_pb(record), **self.exposure_fields(record.key_id))

    def ListKeys(self, request: pb.ListKeysRequest, context):
        try:
            self._admin(context)
            page = self.manager.list_keys(request.workspace_id, request.page_size, request.page_token)
        except AuthError as error:
            return abort(context, error)
        return pb.ListKeysResponse(keys=[key_to_pb(k) for k in page.keys], next_page_token=page.next_page_token)
