import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_KIND_UNSPECIFIED: _ClassVar[KeyKind]
    KEY_KIND_SERVER: _ClassVar[KeyKind]
    KEY_KIND_WIDGET: _ClassVar[KeyKind]
    KEY_KIND_ADMIN: _ClassVar[KeyKind]
    KEY_KIND_INTERNAL: _ClassVar[KeyKind]

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_STATE_UNSPECIFIED: _ClassVar[KeyState]
    KEY_STATE_ACTIVE: _ClassVar[KeyState]
    KEY_STATE_REVOKED: _ClassVar[KeyState]
    KEY_STATE_EXPIRED: _ClassVar[KeyState]
    KEY_STATE_ROTATED: _ClassVar[KeyState]
KEY_KIND_UNSPECIFIED: KeyKind
KEY_KIND_SERVER: KeyKind
KEY_KIND_WIDGET: KeyKind
KEY_KIND_ADMIN: KeyKind
KEY_KIND_INTERNAL: KeyKind
KEY_STATE_UNSPECIFIED: KeyState
KEY_STATE_ACTIVE: KeyState
KEY_STATE_REVOKED: KeyState
KEY_STATE_EXPIRED: KeyState
KEY_STATE_ROTATED: KeyState

class Key(_message.Message):
    __slots__ = ("key_id", "workspace_id", "kind", "display_name", "scopes", "state", "create_time", "expire_time", "revoke_time", "rotated_to", "rotated_from", "hint", "allowed_origins", "grace_expire_time", "revoke_reason", "last_used_time", "use_count", "last_caller")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATED_TO_FIELD_NUMBER: _ClassVar[int]
    ROTATED_FROM_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    GRACE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_TIME_FIELD_NUMBER: _ClassVar[int]
    USE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_CALLER_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    workspace_id: str
    kind: KeyKind
    display_name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    state: KeyState
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    rotated_to: str
    rotated_from: str
    hint: str
    allowed_origins: _containers.RepeatedScalarFieldContainer[str]
    grace_expire_time: _timestamp_pb2.Timestamp
    revoke_reason: str
    last_used_time: _timestamp_pb2.Timestamp
    use_count: int
    last_caller: str
    def __init__(self, key_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., kind: _Optional[_Union[KeyKind, str]] = ..., display_name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[KeyState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotated_to: _Optional[str] = ..., rotated_from: _Optional[str] = ..., hint: _Optional[str] = ..., allowed_origins: _Optional[_Iterable[str]] = ..., grace_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_reason: _Optional[str] = ..., last_used_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., use_count: _Optional[int] = ..., last_caller: _Optional[str] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("key_id", "workspace_id", "kind", "scopes", "expire_time")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    workspace_id: str
    kind: KeyKind
    scopes: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., kind: _Optional[_Union[KeyKind, str]] = ..., scopes: _Optional[_Iterable[str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
