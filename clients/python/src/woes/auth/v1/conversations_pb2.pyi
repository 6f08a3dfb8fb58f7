import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IssueConversationSecretRequest(_message.Message):
    __slots__ = ("public_key", "conversation_id", "origin")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    conversation_id: str
    origin: str
    def __init__(self, public_key: _Optional[str] = ..., conversation_id: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class IssueConversationSecretResponse(_message.Message):
    __slots__ = ("secret", "workspace_id", "conversation_id", "signing_key_id")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    secret: str
    workspace_id: str
    conversation_id: str
    signing_key_id: str
    def __init__(self, secret: _Optional[str] = ..., workspace_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., signing_key_id: _Optional[str] = ...) -> None: ...

class VerifyConversationSecretRequest(_message.Message):
    __slots__ = ("public_key", "origin", "conversation_id", "secret")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    origin: str
    conversation_id: str
    secret: str
    def __init__(self, public_key: _Optional[str] = ..., origin: _Optional[str] = ..., conversation_id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class VerifyConversationSecretResponse(_message.Message):
    __slots__ = ("workspace_id", "conversation_id", "widget_key_id", "signing_key_id")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    WIDGET_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    conversation_id: str
    widget_key_id: str
    signing_key_id: str
    def __init__(self, workspace_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., widget_key_id: _Optional[str] = ..., signing_key_id: _Optional[str] = ...) -> None: ...

class RevokeConversationSecretRequest(_message.Message):
    __slots__ = ("workspace_id", "conversation_id", "reason")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    conversation_id: str
    reason: str
    def __init__(self, workspace_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeConversationSecretResponse(_message.Message):
    __slots__ = ("revocation_count",)
    REVOCATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    revocation_count: int
    def __init__(self, revocation_count: _Optional[int] = ...) -> None: ...

class RotateConversationSigningKeyRequest(_message.Message):
    __slots__ = ("workspace_id", "grace_period")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    grace_period: _duration_pb2.Duration
    def __init__(self, workspace_id: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RotateConversationSigningKeyResponse(_message.Message):
    __slots__ = ("signing_key_id", "retired_keys", "retire_time")
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    RETIRED_KEYS_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    signing_key_id: str
    retired_keys: int
    retire_time: _timestamp_pb2.Timestamp
    def __init__(self, signing_key_id: _Optional[str] = ..., retired_keys: _Optional[int] = ..., retire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
