"""What every feature's servicer shares: the services, the callers' credentials, refusals.

A feature servicer (keys, conversations, test credentials, audit) converts messages and
delegates to the domain; nothing is decided here. They are registered together as one
``woes.auth.v1.AuthService`` (:mod:`auth_service.api.service`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from auth_service.api import convert
from auth_service.api.status import abort

if TYPE_CHECKING:
    from auth_service.app.services import Services
from auth_service.domain.errors import AuthError, Category, InternalError
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.service_keys import authenticate_internal

log = logging.getLogger("auth_service.rpc")

# The refusals counted as failed authentications (ModelRpcMixin.count_failure).
COUNTED_FAILURES = (Category.UNAUTHENTICATED, Category.PERMISSION_DENIED)


class FeatureServicer:
    """The part of ``AuthService`` one feature implements, over the credential manager and the services."""

    def __init__(self, manager: CredentialManager, services: Services | None = None):
        self.manager = manager
        self.services = services

    def _services(self):
        if self.services is None:
            raise InternalError("this server was built without the services of this RPC")
        return self.services

    def _internal_principal(self, context, method: str, permission: str, *, check_permission: bool = True):
        """The verified internal credential of an internal RPC (see
        :func:`auth_service.domain.keys.service_keys.authenticate_internal`); a refusal is counted."""
        try:
            return authenticate_internal(
                self.manager, convert.bearer(context), permission, check_permission=check_permission
            )
        except AuthError as error:
            self.count_failure(method, error)
            raise

    def _admin_principal(self, context):
        try:
            return self.manager.authenticate_admin(convert.bearer(context))
        except AuthError as error:
            self.count_failure("admin", error)
            raise

    def count_failure(self, method: str, error: AuthError) -> None:
        """Count a refused authentication (aggregated audit rows, never one row per failure)."""
        if self.services is not None and error.category in COUNTED_FAILURES:
            self.services.failures.record(method, error.reason, error.metadata.get("key_id", ""))

    def on_widget_refusal(self, token: str, error: AuthError) -> AuthError:
        """Exposure handling for VerifyWidgetKey's wrong-kind refusals (never runs for valid widget keys)."""
        if self.services is not None and error.reason == "CREDENTIAL_NOT_WIDGET_KEY":
            error = self.services.exposure.check_browser_credential(token, "VerifyWidgetKey", error)
        self.count_failure("VerifyWidgetKey", error)
        return error

    def exposure_fields(self, key_id: str) -> dict:
        if self.services is None:
            return {}
        exposure = self.services.exposure.exposure(key_id)
        return {"exposure": convert.exposure_to_pb(exposure)} if exposure else {}

    def _call(self, context, name: str, fn):
        try:
            return fn()
        except AuthError as error:
            log.info("%s refused: %s", name, error.reason, extra={"method": name, "code": error.reason})
            return abort(context, error)
