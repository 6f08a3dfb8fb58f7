"""Everything that works on ``Authenticate``'s request or response bytes, for speed.

* :func:`answer_of`: the serialized answer of a grant, made once per cached entry (the entry holds
  it, :attr:`auth_service.domain.keys.records.CachedKey.answer`) and sent as it is;
* :func:`authenticate_front`: the hot path's probe fused with what the call gate does after it, as
  the call's first frame; given the request's bytes it answers a repeat from its fingerprint
  alone (the grant memo, :mod:`auth_service.cache.memo`) before decoding anything;
* :func:`safe_deserializer`: request bytes that are no valid message become :data:`UNDECODABLE`,
  which the handler refuses with ``INVALID_ARGUMENT``.

Every fast answer equals the full rule's (the differential tests), and a declined fast path
leaves no trace: the full rule then decides as if the fast path did not exist.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError
from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.api.convert import principal_to_pb
from auth_service.domain.errors import AuthError
from auth_service.domain.keys.hot_path import KNOWN_UNKNOWN, WRONG_SECRET
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import CachedKey, Principal


def answer_of(principal: Principal) -> bytes:
    """The serialized ``AuthenticateResponse`` granting ``principal``."""
    return pb.AuthenticateResponse(principal=principal_to_pb(principal)).SerializeToString()


class _Undecodable:
    """Stands for request bytes that are not a valid message (e.g. invalid UTF-8 in a string)."""


UNDECODABLE = _Undecodable()


def safe_deserializer(message_cls) -> Callable[[bytes], object]:
    from_string = message_cls.FromString

    def deserialize(data: bytes):
        try:
            return from_string(data)
        except (DecodeError, ValueError, RuntimeError):
            return UNDECODABLE

    return deserialize


def authenticate_front(
    manager: CredentialManager,
    rest: Callable,
    decode: Callable[[bytes], object] | None = None,
    refuse: Callable[[object, str, AuthError], bool] | None = None,
) -> Callable:
    """:meth:`authenticate_cached` fused with what the call gate does after it, as one frame:
    ``front(request, context)`` answers a grant of the probe itself and passes anything else on
    as ``rest(request, context, found)`` (``found``: the probe's refusal, or ``None``). The gate
    makes it the call's first frame when nothing is decided before the probe (see
    :meth:`auth_service.api.gate.CallGate.wrap`): one Python call fewer than probe and gate
    apart (see :meth:`CredentialManager.probe`).

    With ``decode`` (the method's request deserializer), ``front(wire, context)`` takes the
    request's bytes, as grpcio passes them to a handler registered without a deserializer:
    a repeat of a granted request is answered from them alone
    (:meth:`CredentialManager.probe_wire`), and so is a repeat of one the negative cache
    refused, through ``refuse(context, key_id, error)`` (the gate's accounting of a refusal,
    see :meth:`~auth_service.api.gate.CallGate.wrap`) when it takes it; anything else is
    decoded with ``decode`` and goes on as above, a grant or a negative refusal being
    remembered by its bytes, and so is a refusal of the full rule that the negative cache
    holds once it was made (the first sight of a made-up credential)."""
    probe = manager.probe
    undecodable = UNDECODABLE
    if decode is not None:
        probe_wire = manager.probe_wire
        new_fingerprint = manager.cache.memo.hot_path()[0]
        remember_refused = manager.remember_refused

        def front_wire(wire, context):
            hasher = new_fingerprint()
            hasher.update(wire)
            fingerprint = hasher.digest()
            found = probe_wire(fingerprint)
            if found is not None:
                if type(found) is not str:
                    answer = found.answer
                    return answer if answer is not None else answer_of(found.principal)
                # A refusal of the negative cache, remembered (found: the key id it names).
                if refuse is not None and refuse(context, found, KNOWN_UNKNOWN):
                    return None
                return rest(decode(wire), context, KNOWN_UNKNOWN)
            request = decode(wire)
            if request is undecodable:
                return rest(request, context, None)
            scopes = request.required_scopes[:]
            found = probe(request.credential, scopes, request.caller, fingerprint)
            if type(found) is CachedKey:
                answer = found.answer
                return answer if answer is not None else answer_of(found.principal)
            if found is not None:
                # A refusal found in memory (the negative cache, a key id's record): the gate's
                # accounting of it, as for a remembered one above, when the gate takes it.
                if (found is KNOWN_UNKNOWN or found is WRONG_SECRET) and refuse is not None:
                    if refuse(context, "", found):
                        return None
                return rest(request, context, found)
            answer = rest(request, context, None)
            if answer is None:  # refused by the full rule (returned, as Authenticate's refusals are)
                remember_refused(request.credential, scopes, request.caller, fingerprint)
            return answer

        return front_wire

    def front(request, context):
        if request is undecodable:
            return rest(request, context, None)  # refused by the handler proper, as all such are
        # The scopes as a list, by slicing: iterating the request's repeated field walks it by
        # index until IndexError, which costs more than the rest of the scope checks together.
        found = probe(request.credential, request.required_scopes[:], request.caller)
        if type(found) is CachedKey:  # an ok outcome, counted by the cache as a probe grant
            wire = found.answer
            return wire if wire is not None else answer_of(found.principal)
        return rest(request, context, found)

    return front
