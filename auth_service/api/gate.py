"""The call gate: caller policy, failed-authentication throttling, access logs and metrics.

:meth:`CallGate.wrap` wraps each ``AuthService`` method handler once, when the
service is registered (it also works as a server interceptor, caching the wrapped
handler per method; the serving process does not use it so, since an interceptor
runs on every call in grpcio's polling thread). A call pays one extra Python
frame, and what the frame does is decided when the handler is wrapped:

* a probe (``Authenticate``'s cache lookup), when given, answers first what the
  caches alone decide, and ``Authenticate``'s front answers repeats of requests from
  their bytes (the grant memo); see :meth:`CallGate.wrap`;

* policy: skipped entirely on plaintext when ``anonymous`` may call the group
  (the development default for ``verify``); otherwise one ``auth_context()``
  read per call;
* throttling: one truthiness test while no throttled caller has used up its
  failures; failures are charged only to the callers the policy lists as
  ``throttled`` (see :mod:`auth_service.api.throttle`), so by default none;
* access log and metrics: only when enabled (``WOES_AUTH_ACCESS_LOG``,
  ``WOES_AUTH_METRICS_LISTEN``), otherwise not a single clock read.

The Envoy external-authorization service (``envoy.service.auth.v3.Authorization``)
is gated like a ``verify`` RPC: its denials as unauthenticated are charged to a
throttled caller as ``Authenticate``'s refusals are, and a throttled caller's
``Check`` is answered with a 429 denial. The health and reflection services pass
through untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

from auth_service.api import envoy
from auth_service.api.convert import bearer, request_id_of
from auth_service.api.policy import ANONYMOUS, KEY_PREFIX, VERIFY, DenialSampler, Policy, group_of
from auth_service.api.service import SERVICE_NAME
from auth_service.api.status import abort, abort_throttled, reason_of, set_status, throttled_status
from auth_service.api.throttle import Throttle
from auth_service.api.tls import identity_from_auth_context
from auth_service.domain.audit import AuditEvent
from auth_service.domain.errors import AuthError, CallerNotAllowed, TooManyFailures
from auth_service.domain.tokens import key_id_of
from auth_service.ops.metrics import Metrics

log = logging.getLogger("auth_service.calls")
access_log = logging.getLogger("auth_service.access")

_METHOD_PREFIX = f"/{SERVICE_NAME}/"
_ENVOY_PREFIX = f"/{envoy.SERVICE_NAME}/"
# Request fields that carry the credential a verify RPC checks; other RPCs carry it as the bearer.
_CREDENTIAL_FIELDS = {"Authenticate": "credential", "VerifyWidgetKey": "public_key"}


class CallGate(grpc.ServerInterceptor):
    def __init__(
        self,
        *,
        policy: Policy,
        tls: bool,
        throttle: Throttle,
        resolve_admin: Callable[[str | None], object] | None = None,
        audit: Callable[[AuditEvent], None] | None = None,
        metrics: Metrics | None = None,
        access_log_enabled: bool = False,
        known_good: Callable[[str], bool] | None = None,
    ):
        self.policy = policy
        self.tls = tls
        self.throttle = throttle
        self.resolve_admin = resolve_admin
        self.audit = audit
        self.metrics = metrics
        self.access_log = access_log_enabled
        self.known_good = known_good or (lambda _token: False)
        self.sampler = DenialSampler()
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        """As a server interceptor (the serving process wraps its handlers at registration instead)."""
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = self.wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def wrap(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        probe: Callable[[object], object] | None = None,
        answer_refusal: Callable[[object, object, AuthError], object] | None = None,
        front: Callable[[Callable], Callable] | None = None,
    ) -> grpc.RpcMethodHandler:
        """The gated handler of ``method`` (``/package.Service/Method``); other services pass untouched.

        ``probe(request)``, when given, is tried once the caller passed the policy and before the
        throttle. Bytes are the response: the probe may only answer so what the handler would
        answer successfully (a credential the verified cache alone grants), so such an answer is
        never throttled, exactly as known-good credentials are not. An :class:`AuthError` is a
        refusal the probe found without the handler (a credential the negative cache knows): the
        throttle is applied first, as before the handler, then ``answer_refusal(request, context,
        error)`` answers it in the handler's place. ``None``: the handler decides.

        ``front(rest, decode, refuse)``, given with ``probe``, is ``probe`` fused with what follows
        it: it returns the call's first frame, which takes the request's bytes (the handler is then
        registered without a deserializer), must answer as ``probe`` would of ``decode(bytes)``
        and hand anything but a response to ``rest(request, context, answer)`` with the decoded
        request. A refusal it finds from the bytes alone it may give to ``refuse(context, key_id,
        error)`` first (``None`` without ``answer_refusal``), which answers and charges it as the
        gate would and returns ``True``, or returns ``False`` when the gate must see the request.
        With a policy to check, or an access log or metrics, a first frame reads the caller's
        certificate identity, hands the call to the front only if the policy admits that identity
        (any other call goes to the gate proper, decoded, which admits or refuses it and records
        it as before) and times and records what the front answers. On mTLS the front is given
        no ``refuse`` (a refusal is charged to the identity, which the gate proper reads).
        Without ``front``, ``probe`` is tried in the first frame when nothing is decided before it
        (no policy to check, no access log or metrics), and inside the gate otherwise.
        """
        if handler.unary_unary is None:
            return handler
        kw = {"probe": probe, "answer_refusal": answer_refusal, "front": front}
        if method.startswith(_METHOD_PREFIX):
            name = method[len(_METHOD_PREFIX) :]
            return self._wrap(name, group_of(name), handler, throttled=True, **kw)
        if method.startswith(_ENVOY_PREFIX):
            # Check answers denials inside its response (gRPC status OK): the gate reads them there.
            return self._wrap("envoy." + method[len(_ENVOY_PREFIX) :], VERIFY, handler, throttled=True, **kw)
        return handler

    # -- identity and policy --------------------------------------------------

    def _key_identity(self, context) -> str | None:
        if self.resolve_admin is None:
            return None
        token = bearer(context)
        if not token:
            return None
        try:
            principal = self.resolve_admin(token)
        except AuthError:
            return None
        return KEY_PREFIX + principal.key_id

    def _deny(self, context, identity: str, group: str, method: str):
        if self.metrics is not None:
            self.metrics.policy_denials.labels(group).inc()
        suppressed = self.sampler.admit(identity, group)
        if suppressed is not None:
            log.warning(
                "caller %s may not call %s (group %s)",
                identity,
                method,
                group,
                extra={"method": method, "code": "CALLER_NOT_ALLOWED", "caller": identity},
            )
            if self.audit is not None:
                detail = f"method={method} group={group}" + (f" refused_since_last={suppressed}" if suppressed else "")
                try:
                    self.audit(
                        AuditEvent(action="policy.deny", actor=f"caller:{identity}", outcome="denied", detail=detail)
                    )
                except Exception:
                    log.warning("could not write the audit event of a policy refusal", exc_info=True)
        return abort(context, CallerNotAllowed(identity, group))

    # -- the wrapper -----------------------------------------------------------

    def _wrap(
        self,
        method: str,
        group: str,
        handler: grpc.RpcMethodHandler,
        *,
        throttled: bool,
        probe: Callable[[object], object] | None = None,
        answer_refusal: Callable[[object, object, AuthError], object] | None = None,
        front: Callable[[Callable], Callable] | None = None,
    ) -> grpc.RpcMethodHandler:
        inner = handler.unary_unary
        known_good = self.known_good
        policy, tls, throttle = self.policy, self.tls, self.throttle
        check_policy = tls or not policy.allows(ANONYMOUS, group)
        try_key_identity = policy.names_keys
        credential_field = _CREDENTIAL_FIELDS.get(method)
        observe = self.metrics is not None or self.access_log
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        deny = self._deny
        key_identity = self._key_identity
        finish = self._finish

        callers = throttle.callers
        # Envoy's Check carries its denial in the response, and its credential in the HTTP headers.
        envoy_check = method == "envoy.Check"
        if envoy_check and handler.response_serializer is None:
            raise ValueError("envoy.Check is gated with its response serializer")

        def presented(request, context) -> str:
            if credential_field is not None:
                return getattr(request, credential_field, "") or ""
            if envoy_check:
                return envoy.credential_of(request)
            return bearer(context) or ""

        def presented_key_id(request, context) -> str:
            return key_id_of(presented(request, context))

        # A handler registered without a response serializer may end a call by setting its status and
        # returning None (see status.refuse): throttled refusals of such a method are returned too.
        returns_refusals = handler.response_serializer is None

        def refuse(context, scope: str, wait: float):
            throttle.refused[scope] += 1
            if self.metrics is not None:
                self.metrics.throttled.labels(scope).inc()
            if envoy_check:
                return envoy.throttled(wait)
            if returns_refusals:
                return set_status(context, throttled_status(TooManyFailures(scope, wait)))
            return abort_throttled(context, TooManyFailures(scope, wait))

        charges_callers, bucket_of = throttle.charges_callers, throttle.bucket_of

        def count_failure(context, identity: str) -> None:
            """Charge a refused authentication to its caller, if the policy throttles that caller."""
            if charges_callers:
                throttle.failed(bucket_of(identity, None if tls else context.peer()))

        def make_behavior(probe, observed: bool = observe):
            # observed: whether this frame times and records the call (access log, metrics); not
            # when the frame that calls it does.
            def behavior(request, context, probed=None):
                # While no bucket is empty (no throttled caller failed too often lately): no peer, no lookup.
                started = time.perf_counter() if observed else 0.0
                identity = ANONYMOUS
                key_id = None
                failed = False
                try:
                    if tls:
                        identity = identity_from_auth_context(context.auth_context()) or ANONYMOUS
                    if check_policy and not policy.allows(identity, group):
                        by_key = key_identity(context) if try_key_identity else None
                        if by_key is None or not policy.allows(by_key, group):
                            return deny(context, identity, group, method)
                        identity = by_key
                    if probe is not None:
                        probed = probe(request)
                        if type(probed) is bytes:
                            return probed
                    if throttled and callers.blocked and callers.any_blocked():
                        # plaintext: the caller's bucket is its address, read only now
                        bucket = bucket_of(identity, None if tls else context.peer())
                        wait = callers.retry_after(bucket) if bucket is not None else 0.0
                        if wait and not known_good(presented(request, context)):
                            return refuse(context, "caller", wait)
                    try:
                        if probed is not None:  # a refusal the probe found, answered in the handler's place
                            result = answer_refusal(request, context, probed)
                        else:
                            result = inner(request, context)
                    except BaseException:
                        # A refusal raised (context.abort) ...
                        if throttled and context.code() is unauthenticated:
                            count_failure(context, identity)
                        raise
                    # ... or returned with the status set on the call (status.refuse), or (Check) in the response.
                    if throttled:
                        if result is None and context.code() is unauthenticated:
                            count_failure(context, identity)
                        elif envoy_check and envoy.unauthenticated(result):
                            count_failure(context, identity)
                    return result
                except BaseException:
                    failed = True
                    raise
                finally:
                    if observed:
                        if key_id is None:
                            key_id = presented_key_id(request, context)
                        finish(method, context, started, identity, key_id, failed)

            return behavior

        def refuse_found(context, key_id: str, error: AuthError) -> bool:
            """The gate's part of a refusal the probe found from the request's bytes alone (the
            grant memo's record of one: ``key_id``, the key id the credential names, charged to
            nobody), answered with ``answer_refusal`` and charged to a throttled caller, as
            ``make_behavior``'s frame does with a decoded request while no bucket is empty.
            ``False``, having done nothing, when some bucket may be empty: the frame then decides
            on the decoded request (whether this caller is the one throttled)."""
            if throttled and callers.blocked and callers.any_blocked():
                return False
            answer_refusal(None, context, error)
            if throttled and charges_callers:
                throttle.failed(bucket_of(ANONYMOUS, context.peer()))  # given only on plaintext
            return True

        behavior = make_behavior(probe)
        deserializer = handler.request_deserializer
        if probe is not None and front is not None and deserializer is not None:
            # The first frame takes the request's bytes and decodes them only if it must; the gate
            # proper only for what it does not answer.
            quiet = make_behavior(None, observed=False)  # what the front hands on (timed around it)
            # On mTLS a refusal is charged to the certificate's identity, which the gate proper
            # reads: refusals the front finds from the bytes go there (decoded), grants do not.
            fronted = front(quiet, deserializer, refuse_found if answer_refusal is not None and not tls else None)
            if check_policy or observe:
                decode = deserializer
                gated = make_behavior(None)
                started_at = time.perf_counter

                def behavior(wire, context):
                    # A caller its certificate's identity admits goes to the front; any other (a
                    # plaintext caller, one the policy admits by its admin credential, or none)
                    # to the gate proper, which admits or refuses it (and records it) as before.
                    identity = (identity_from_auth_context(context.auth_context()) or ANONYMOUS) if tls else ANONYMOUS
                    if check_policy and not policy.allows(identity, group):
                        return gated(decode(wire), context)
                    if not observe:
                        return fronted(wire, context)
                    started = started_at()
                    failed = False
                    try:
                        return fronted(wire, context)
                    except BaseException:
                        failed = True
                        raise
                    finally:
                        # The key id only for the access log (metrics have no such label).
                        key_id = presented_key_id(decode(wire), context) if self.access_log else ""
                        finish(method, context, started, identity, key_id, failed)

            else:
                behavior = fronted
            deserializer = None
        elif probe is not None and not check_policy and not observe:
            # Nothing to decide before the probe: try it first, in one frame; the gate proper only
            # for what it does not answer.
            gated = make_behavior(None)
            if front is not None:
                behavior = front(gated)
            else:

                def behavior(request, context):
                    answer = probe(request)
                    if type(answer) is bytes:
                        return answer
                    return gated(request, context, answer)

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    def _finish(self, method: str, context, started: float, identity: str, key_id: str, failed: bool) -> None:
        seconds = time.perf_counter() - started
        code = context.code()
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        reason = reason_of(context) if code is not grpc.StatusCode.OK else ""
        if self.metrics is not None:
            self.metrics.observe(method, code.name, seconds, reason)
        if self.access_log:
            access_log.info(
                "%s %s%s %.3f ms",
                method,
                code.name,
                f" {reason}" if reason else "",
                seconds * 1000,
                extra={
                    "request_id": request_id_of(context),
                    "method": method,
                    "code": code.name,
                    "reason": reason or None,
                    "duration_ms": round(seconds * 1000, 3),
                    "key_id": key_id or None,
                    "caller": identity,
                    "peer": context.peer(),
                },
            )
