"""What the client answers: plain frozen dataclasses, free of protobuf."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from woes.auth.v1 import resources_pb2

_KIND_NAMES = {
    resources_pb2.KEY_KIND_SERVER: "server",
    resources_pb2.KEY_KIND_WIDGET: "widget",
    resources_pb2.KEY_KIND_ADMIN: "admin",
    resources_pb2.KEY_KIND_INTERNAL: "internal",
}


def _scope_satisfied(required: str, granted: tuple[str, ...]) -> bool:
    if required in granted:
        return True
    category, _, access = required.partition(":")
    return access == "read" and f"{category}:write" in granted


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified server API credential speaks for and what it may do."""

    key_id: str
    workspace_id: str
    kind: str
    scopes: tuple[str, ...]
    expire_time: datetime | None = None

    def has_scope(self, scope: str) -> bool:
        """True when ``scope`` is granted (a granted ``<category>:write`` satisfies ``<category>:read``)."""
        return _scope_satisfied(scope, self.scopes)

    @classmethod
    def from_pb(cls, message: resources_pb2.Principal) -> Principal:
        expire = message.expire_time.ToDatetime(tzinfo=timezone.utc) if message.HasField("expire_time") else None  # noqa: UP017 (3.10)
        return cls(
            key_id=message.key_id,
            workspace_id=message.workspace_id,
            kind=_KIND_NAMES.get(message.kind, "unspecified"),
            scopes=tuple(message.scopes),
            expire_time=expire,
        )


@dataclass(frozen=True, slots=True)
class WidgetKey:
    """A verified widget public key: the workspace its traffic belongs to."""

    workspace_id: str
    key_id: str


@dataclass(frozen=True)
class ConversationAccess:
    """A verified conversation history secret: it opens this one conversation of this workspace."""

    workspace_id: str
    conversation_id: str
    widget_key_id: str
