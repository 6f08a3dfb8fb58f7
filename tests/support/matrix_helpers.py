"""The authorization matrix of ``docs/security.md``: its rows and columns, the two servers it is run
against, and how each cell is called.

Everything here speaks to ``woes-auth`` as a client does (the generated ``woes.auth.v1`` and Envoy
contracts over real channels) or runs the ``woes-auth`` command; nothing reaches into the server.
``python -m tests.support.matrix_doc`` prints both tables as the servers answer them; the tables of the
documentation are written from that output, each cell reviewed against the design, and
``tests/integration/test_authorization_matrix.py`` keeps them true.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from envoy.service.auth.v3 import attribute_context_pb2 as actx
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2
from woes.auth.v1 import audit_pb2 as apb
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res
from woes.auth.v1 import test_credentials_pb2 as tpb

from tests import conftest
from tests.support.rich_errors import rich_error
from tests.support.rpc import assert_no_secret_in

_ENVOY = ext.DESCRIPTOR.services_by_name["Authorization"]
ENVOY_CHECK = f"{_ENVOY.full_name}/{_ENVOY.methods_by_name['Check'].name}"
RPCS: tuple[str, ...] = tuple(m.name for m in pb.DESCRIPTOR.services_by_name["AuthService"].methods) + (ENVOY_CHECK,)
"""The rows of both tables: every RPC of ``woes.auth.v1.AuthService``, then Envoy's ``Check``."""

WORKSPACE = "ws-matrix"
CONVERSATION = "conv-matrix"
ALLOWED_ORIGIN = "https://shop.example"
OTHER_ORIGIN = "https://elsewhere.example"
MALFORMED = "woes_sk_not-a-credential"
SCOPE = "conversations:read"

CREDENTIAL_COLUMNS = (
    "none",
    "malformed",
    "server active",
    "server in grace",
    "server past grace",
    "server revoked",
    "server expired",
    "widget allowed origin",
    "widget other origin",
    "conversation secret",
    "admin",
    "internal reveal",
    "internal issue",
)
CALLER_COLUMNS = (
    "plaintext anonymous",
    "gateway",
    "admin-tool",
    "lab-runner",
    "widget-backend",
    "no URI SAN",
    "foreign CA",
)
PROPER: dict[str, str] = {
    "Authenticate": "server active",
    "VerifyWidgetKey": "widget allowed origin",
    "IssueConversationSecret": "internal issue",
    "VerifyConversationSecret": "conversation secret",
    "RevealTestCredential": "internal reveal",
    ENVOY_CHECK: "server active",
}
"""The credential each RPC is made for (``admin`` for every RPC not named): the credential of the
callers table, whose cells are ``OK`` exactly when the policy admits the caller."""

REVEAL, ISSUE = "lab:test_credentials:reveal", "widget:conversation_secrets:issue"
TLS_HANDSHAKE = "TLS_HANDSHAKE"


def proper(rpc: str) -> str:
    return PROPER.get(rpc, "admin")


@dataclass(frozen=True)
class Presented:
    """What one cell presents: the credential under test (``None``: none at all) and the origin."""

    credential: str | None
    origin: str = ALLOWED_ORIGIN


@dataclass
class World:
    """A server's fixed targets and the credentials of the columns; ``setup`` makes fresh targets."""

    setup: pb_grpc.AuthServiceStub
    admin: str = field(repr=False)
    credentials: dict[str, Presented] = field(default_factory=dict, repr=False)
    widget_key: str = field(default="", repr=False)
    server_key_id: str = ""
    test_credential_id: str = ""

    @property
    def admin_md(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.admin)

    def issue(self, kind=res.KEY_KIND_SERVER, **fields) -> pb.IssueKeyResponse:
        scopes = [SCOPE] if kind == res.KEY_KIND_SERVER else []
        request = pb.IssueKeyRequest(workspace_id=WORKSPACE, kind=kind, scopes=scopes, display_name="matrix", **fields)
        issued = self.setup.IssueKey(request, metadata=self.admin_md, timeout=30)
        conftest.MINTED.add(issued.secret)
        return issued

    def fresh_key_id(self) -> str:
        return self.issue().key.key_id

    def fresh_test_credential(self) -> str:
        request = tpb.PutTestCredentialRequest(
            workspace_id=WORKSPACE,
            name=_fresh("matrix"),
            kind=tpb.TEST_CREDENTIAL_KIND_BEARER_TOKEN,
            secret_material=_material(),
            target_base_url="https://api.shop.example",
        )
        return self.setup.PutTestCredential(request, metadata=self.admin_md, timeout=30).credential.credential_id


def bearer(credential: str | None) -> tuple[tuple[str, str], ...]:
    return () if credential is None else (("authorization", f"Bearer {credential}"),)


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _material() -> str:
    """A test credential's plaintext, recorded for the log scan."""
    material = "matrix-material-" + secrets.token_hex(16)
    conftest.OTHER_SECRETS.add(material)
    return material


# -- each RPC's request: where the credential under test goes, and the rest valid -------------------

_Request = Callable[[World, Presented], object]
REQUESTS: dict[str, _Request] = {
    "Authenticate": lambda w, p: pb.AuthenticateRequest(credential=p.credential or "", required_scopes=[SCOPE]),
    "VerifyWidgetKey": lambda w, p: pb.VerifyWidgetKeyRequest(public_key=p.credential or "", origin=p.origin),
    "IssueKey": lambda w, p: pb.IssueKeyRequest(
        workspace_id=WORKSPACE, kind=res.KEY_KIND_SERVER, scopes=[SCOPE], display_name="matrix"
    ),
    "Rotate": lambda w, p: pb.RotateRequest(key_id=w.fresh_key_id()),
    "Revoke": lambda w, p: pb.RevokeRequest(key_id=w.fresh_key_id(), reason="matrix"),
    "GetKey": lambda w, p: pb.GetKeyRequest(key_id=w.server_key_id),
    "ListKeys": lambda w, p: pb.ListKeysRequest(workspace_id=WORKSPACE, page_size=1),
    "IssueConversationSecret": lambda w, p: cpb.IssueConversationSecretRequest(
        public_key=w.widget_key, conversation_id=CONVERSATION, origin=p.origin
    ),
    "VerifyConversationSecret": lambda w, p: cpb.VerifyConversationSecretRequest(
        public_key=w.widget_key, origin=p.origin, conversation_id=CONVERSATION, secret=p.credential or ""
    ),
    "RevokeConversationSecret": lambda w, p: cpb.RevokeConversationSecretRequest(
        workspace_id=WORKSPACE, conversation_id=_fresh("conv"), reason="matrix"
    ),
    "RotateConversationSigningKey": lambda w, p: cpb.RotateConversationSigningKeyRequest(
        workspace_id=_fresh("ws-rotate"), grace_period=duration_pb2.Duration(seconds=0)
    ),
    "PutTestCredential": lambda w, p: tpb.PutTestCredentialRequest(
        workspace_id=WORKSPACE,
        name=_fresh("put"),
        kind=tpb.TEST_CREDENTIAL_KIND_API_KEY,
        secret_material=_material(),
        target_base_url="https://api.shop.example",
    ),
    "GetTestCredential": lambda w, p: tpb.GetTestCredentialRequest(
        workspace_id=WORKSPACE, credential_id=w.test_credential_id
    ),
    "ListTestCredentials": lambda w, p: tpb.ListTestCredentialsRequest(workspace_id=WORKSPACE, page_size=1),
    "DeleteTestCredential": lambda w, p: tpb.DeleteTestCredentialRequest(
        workspace_id=WORKSPACE, credential_id=w.fresh_test_credential()
    ),
    "RevealTestCredential": lambda w, p: tpb.RevealTestCredentialRequest(
        workspace_id=WORKSPACE, credential_id=w.test_credential_id, reason="matrix"
    ),
    "ListAuditEvents": lambda w, p: apb.ListAuditEventsRequest(workspace_id=WORKSPACE, page_size=1),
    "GetWorkspaceSettings": lambda w, p: apb.GetWorkspaceSettingsRequest(workspace_id=WORKSPACE),
    "UpdateWorkspaceSettings": lambda w, p: apb.UpdateWorkspaceSettingsRequest(
        workspace_id=_fresh("ws-settings"), auto_revoke_exposed=False
    ),
}
"""Every AuthService RPC's request for a cell. The credential under test is the request's field for
the three verify RPCs (``credential``, ``public_key``, ``secret``) and the ``authorization: Bearer``
metadata for every other; state-changing RPCs act on a target made for that call alone."""

IN_REQUEST = ("Authenticate", "VerifyWidgetKey", "VerifyConversationSecret")


def check_request(p: Presented) -> ext.CheckRequest:
    """What Envoy's ext_authz filter sends for ``GET /v1/conversations`` of a route needing ``SCOPE``."""
    headers = {":authority": "api.woes.test", ":method": "GET", ":path": "/v1/conversations"}
    if p.credential is not None:
        headers["authorization"] = f"Bearer {p.credential}"
    http = actx.AttributeContext.HttpRequest(method="GET", path="/v1/conversations", host="api.woes.test")
    http.headers.update(headers)
    return ext.CheckRequest(
        attributes=actx.AttributeContext(
            request=actx.AttributeContext.Request(http=http), context_extensions={"required_scopes": SCOPE}
        )
    )


@dataclass(frozen=True)
class Outcome:
    """``OK``, an ErrorInfo reason, or ``TLS_HANDSHAKE``; with the status code's name."""

    result: str
    code: str


def call(world: World, channel: grpc.Channel, rpc: str, presented: Presented) -> Outcome:
    """Run one cell: ``rpc`` over ``channel`` presenting ``presented``. Check's own denials travel
    in its response (gRPC status OK): their code is the response's status, their reason the one
    its JSON body names."""
    try:
        if rpc == ENVOY_CHECK:
            answer = ext_grpc.AuthorizationStub(channel).Check(check_request(presented), timeout=30)
            if answer.status.code == code_pb2.OK:
                return Outcome("OK", "OK")
            body = answer.denied_response.body
            assert_no_secret_in([body, answer.status.message])
            return Outcome(json.loads(body)["error"]["reason"], code_pb2.Code.Name(answer.status.code))
        request = REQUESTS[rpc](world, presented)
        metadata = () if rpc in IN_REQUEST else bearer(presented.credential)
        answer = getattr(pb_grpc.AuthServiceStub(channel), rpc)(request, metadata=metadata, timeout=30)
        if getattr(answer, "secret", ""):  # IssueKey, Rotate, IssueConversationSecret: for the log scan
            conftest.MINTED.add(answer.secret)
    except grpc.RpcError as err:
        error = rich_error(err)
        assert_no_secret_in([error.message, *error.metadata.values()])
        if error.code is grpc.StatusCode.UNAVAILABLE and not error.reason:
            return Outcome(TLS_HANDSHAKE, error.code.name)
        return Outcome(error.reason or f"(no ErrorInfo: {error.message})", error.code.name)
    return Outcome("OK", "OK")


# -- the worlds: credentials in every state -------------------------------------------------------


def build_world(setup: pb_grpc.AuthServiceStub, issue_channel: grpc.Channel, service_keys: dict[str, str]) -> World:
    """Make the fixed targets and one credential per column on a server whose ``setup`` stub may
    call the admin RPCs and whose ``issue_channel`` may call ``IssueConversationSecret``.
    ``service_keys``: the ``admin``, ``internal reveal`` and ``internal issue`` credentials."""
    world = World(setup, service_keys["admin"])
    # Expired: issued to expire in a moment; the wait for it is at the end.
    expiring = world.issue(expire_time=timestamp_pb2.Timestamp(seconds=int(time.time()) + 3))
    active = world.issue()
    world.server_key_id = active.key.key_id
    in_grace = world.issue()
    rotated = world.setup.Rotate(
        pb.RotateRequest(key_id=in_grace.key.key_id, grace_period=duration_pb2.Duration(seconds=86400)),
        metadata=world.admin_md,
        timeout=30,
    )
    conftest.MINTED.add(rotated.secret)
    past_grace = world.issue()
    rotated = world.setup.Rotate(
        pb.RotateRequest(key_id=past_grace.key.key_id, grace_period=duration_pb2.Duration(seconds=0)),
        metadata=world.admin_md,
        timeout=30,
    )
    conftest.MINTED.add(rotated.secret)
    revoked = world.issue()
    world.setup.Revoke(
        pb.RevokeRequest(key_id=revoked.key.key_id, reason="matrix"), metadata=world.admin_md, timeout=30
    )
    widget = world.issue(kind=res.KEY_KIND_WIDGET, allowed_origins=[ALLOWED_ORIGIN])
    world.widget_key = widget.secret
    conversation = pb_grpc.AuthServiceStub(issue_channel).IssueConversationSecret(
        cpb.IssueConversationSecretRequest(
            public_key=widget.secret, conversation_id=CONVERSATION, origin=ALLOWED_ORIGIN
        ),
        metadata=bearer(service_keys["internal issue"]),
        timeout=30,
    )
    conftest.MINTED.add(conversation.secret)
    world.test_credential_id = world.fresh_test_credential()
    world.credentials = {
        "none": Presented(None),
        "malformed": Presented(MALFORMED),
        "server active": Presented(active.secret),
        "server in grace": Presented(in_grace.secret),
        "server past grace": Presented(past_grace.secret),
        "server revoked": Presented(revoked.secret),
        "server expired": Presented(expiring.secret),
        "widget allowed origin": Presented(widget.secret, ALLOWED_ORIGIN),
        "widget other origin": Presented(widget.secret, OTHER_ORIGIN),
        "conversation secret": Presented(conversation.secret),
        "admin": Presented(service_keys["admin"]),
        "internal reveal": Presented(service_keys["internal reveal"]),
        "internal issue": Presented(service_keys["internal issue"]),
    }
    time.sleep(max(0.0, expiring.key.expire_time.seconds - time.time() + 0.2))
    return world
