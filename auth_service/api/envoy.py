"""Envoy external authorization: ``envoy.service.auth.v3.Authorization/Check``.

Lets an Envoy in front of an HTTP service authenticate its requests with
woes-auth (the ``ext_authz`` HTTP filter, gRPC mode). The adapter reads
``authorization: Bearer <server API credential>`` from the request headers,
asks :meth:`CredentialManager.authenticate` (with the scopes the route asks
for), and answers:

* allowed: ``x-woes-workspace-id``, ``x-woes-key-id`` and ``x-woes-scopes``
  set on the upstream request (overwriting any the client sent, so they cannot
  be forged) and ``authorization`` removed, so the credential never reaches the
  upstream service;
* denied: 401 for an unusable credential, 403 for a credential that may not do
  this, 503 when the credential store is down (fail closed), 500 for a route
  misconfiguration, with a JSON body naming the reason, never the credential.

Route configuration travels in the filter's ``context_extensions``:
``required_scopes`` (comma or space separated) and ``caller`` (the name
recorded as the key's last caller; ``envoy`` by default).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from auth_service.domain.errors import AuthError, Category, CredentialMalformed, InternalError
from auth_service.domain.keys.manager import CredentialManager

log = logging.getLogger(__name__)

SERVICE_NAME = "envoy.service.auth.v3.Authorization"
HEADER_WORKSPACE = "x-woes-workspace-id"
HEADER_KEY_ID = "x-woes-key-id"
HEADER_SCOPES = "x-woes-scopes"
DEFAULT_CALLER = "envoy"

_HTTP: dict[Category, tuple[int, int]] = {
    Category.UNAUTHENTICATED: (http_status_pb2.Unauthorized, code_pb2.UNAUTHENTICATED),
    Category.PERMISSION_DENIED: (http_status_pb2.Forbidden, code_pb2.PERMISSION_DENIED),
    Category.UNAVAILABLE: (http_status_pb2.ServiceUnavailable, code_pb2.UNAVAILABLE),
}
_HTTP_NAMES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 503: "UNAVAILABLE", 500: "INTERNAL"}
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def _headers(http: attribute_context_pb2.AttributeContext.HttpRequest) -> dict[str, list[str]]:
    """Request headers by lower-case name; ``header_map`` is used when Envoy sends raw headers."""
    out: dict[str, list[str]] = {}
    if http.headers:
        for name, value in http.headers.items():
            out.setdefault(name.lower(), []).append(value)
    else:
        for header in http.header_map.headers:
            value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
            out.setdefault(header.key.lower(), []).append(value)
    return out


def bearer(headers: dict[str, list[str]]) -> str:
    """The credential of the one ``authorization: Bearer`` header; raises CredentialMalformed otherwise."""
    values = headers.get("authorization", [])
    # Envoy joins repeated headers with "," in the `headers` map: a comma means several credentials.
    if len(values) != 1 or "," in values[0]:
        raise CredentialMalformed(
            "the request needs exactly one 'authorization: Bearer <server API credential>' header"
        )
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CredentialMalformed("the authorization header must be 'Bearer <server API credential>'")
    return token.strip()


def required_scopes(extensions) -> tuple[str, ...]:
    raw = extensions.get("required_scopes", "")
    return tuple(s for s in raw.replace(",", " ").split() if s)


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def allowed(principal) -> ext.CheckResponse:
    return ext.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=ext.OkHttpResponse(
            headers=[
                _header(HEADER_WORKSPACE, principal.workspace_id),
                _header(HEADER_KEY_ID, principal.key_id),
                _header(HEADER_SCOPES, ",".join(principal.scopes)),
            ],
            headers_to_remove=["authorization"],
        ),
    )


def denied(error: AuthError) -> ext.CheckResponse:
    http, code = _HTTP.get(error.category, (http_status_pb2.InternalServerError, code_pb2.INTERNAL))
    if error.category is Category.INVALID_ARGUMENT:
        # Only the route's configuration (required_scopes, caller) can be invalid here: Envoy's fault, not the client's.
        log.error("ext_authz configuration refused: %s", error.message)
        error = InternalError("the authorization configuration of this route is invalid")
    body = {
        "error": {
            "code": int(http),
            "status": _HTTP_NAMES.get(int(http), "INTERNAL"),
            "reason": error.reason,
            "domain": "auth.woes",
            "message": error.message,
        }
    }
    headers = [_header("content-type", "application/json")]
    if http == http_status_pb2.Unauthorized:
        headers.append(_header("www-authenticate", 'Bearer realm="woes"'))
    return ext.CheckResponse(
        status=status_pb2.Status(code=code, message=error.message),
        denied_response=ext.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http), headers=headers, body=json.dumps(body)
        ),
    )


def credential_of(request: ext.CheckRequest) -> str:
    """The credential a Check request presents, or ``""`` when it presents none usable."""
    try:
        return bearer(_headers(request.attributes.request.http))
    except CredentialMalformed:
        return ""


def unauthenticated(response: ext.CheckResponse | None) -> bool:
    """Whether a Check answer denies the request for an unusable credential (a failed authentication)."""
    return response is not None and response.status.code == code_pb2.UNAUTHENTICATED


def throttled(retry_after: float) -> ext.CheckResponse:
    """The denial of a caller whose failed authentications are throttled: HTTP 429 with
    ``retry-after`` (whole seconds, rounded up), gRPC code RESOURCE_EXHAUSTED."""
    seconds = max(1, math.ceil(retry_after))
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "reason": "TOO_MANY_FAILURES",
            "domain": "auth.woes",
            "message": "too many failed authentications from this caller; retry later",
        }
    }
    return ext.CheckResponse(
        status=status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=body["error"]["message"]),
        denied_response=ext.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http_status_pb2.TooManyRequests),
            headers=[_header("content-type", "application/json"), _header("retry-after", str(seconds))],
            body=json.dumps(body),
        ),
    )


class AuthorizationServicer(ext_grpc.AuthorizationServicer):
    """``envoy.service.auth.v3.Authorization`` over a :class:`CredentialManager`."""

    def __init__(self, manager: CredentialManager, on_refused: Callable[[str, AuthError], None] | None = None):
        """``on_refused(method, error)``: told of every refusal, as the AuthService servicer's
        failures are counted and audited (:meth:`auth_service.api.base.FeatureServicer.count_failure`)."""
        self.manager = manager
        self.on_refused = on_refused

    def Check(self, request: ext.CheckRequest, context) -> ext.CheckResponse:
        attributes = request.attributes
        extensions = attributes.context_extensions
        try:
            credential = bearer(_headers(attributes.request.http))
            principal = self.manager.authenticate(
                credential, required_scopes(extensions), extensions.get("caller", DEFAULT_CALLER)
            )
        except AuthError as error:
            log.debug("ext_authz denied: %s", error.reason, extra={"method": "Check", "code": error.reason})
            if self.on_refused is not None:
                self.on_refused("envoy.Check", error)
            return denied(error)
        except Exception:
            log.exception("ext_authz check failed")
            return denied(InternalError("internal error; see the server log"))
        return allowed(principal)


def add_to_server(servicer: AuthorizationServicer, server: grpc.Server, gate=None) -> None:
    """Register ``Check``; ``gate`` (a :class:`auth_service.api.gate.CallGate`) wraps it once."""
    if gate is None:
        ext_grpc.add_AuthorizationServicer_to_server(servicer, server)
        return
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.Check,
        request_deserializer=ext.CheckRequest.FromString,
        response_serializer=ext.CheckResponse.SerializeToString,
    )
    handlers = {"Check": gate.wrap(f"/{SERVICE_NAME}/Check", handler)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
