import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from woes.auth.v1 import audit_pb2 as _audit_pb2
from woes.auth.v1 import conversations_pb2 as _conversations_pb2
from woes.auth.v1 import resources_pb2 as _resources_pb2
from woes.auth.v1 import test_credentials_pb2 as _test_credentials_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateRequest(_message.Message):
    __slots__ = ("credential", "required_scopes", "caller")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    credential: str
    required_scopes: _containers.RepeatedScalarFieldContainer[str]
    caller: str
    def __init__(self, credential: _Optional[str] = ..., required_scopes: _Optional[_Iterable[str]] = ..., caller: _Optional[str] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("principal",)
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal: _resources_pb2.Principal
    def __init__(self, principal: _Optional[_Union[_resources_pb2.Principal, _Mapping]] = ...) -> None: ...

class VerifyWidgetKeyRequest(_message.Message):
    __slots__ = ("public_key", "origin")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    origin: str
    def __init__(self, public_key: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class VerifyWidgetKeyResponse(_message.Message):
    __slots__ = ("workspace_id", "key_id")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    key_id: str
    def __init__(self, workspace_id: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class IssueKeyRequest(_message.Message):
    __slots__ = ("workspace_id", "kind", "display_name", "scopes", "expire_time", "allowed_origins", "request_id")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    kind: _resources_pb2.KeyKind
    display_name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    allowed_origins: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, workspace_id: _Optional[str] = ..., kind: _Optional[_Union[_resources_pb2.KeyKind, str]] = ..., display_name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allowed_origins: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class IssueKeyResponse(_message.Message):
    __slots__ = ("key", "secret", "replayed")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    key: _resources_pb2.Key
    secret: str
    replayed: bool
    def __init__(self, key: _Optional[_Union[_resources_pb2.Key, _Mapping]] = ..., secret: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RotateRequest(_message.Message):
    __slots__ = ("key_id", "grace_period")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    grace_period: _duration_pb2.Duration
    def __init__(self, key_id: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RotateResponse(_message.Message):
    __slots__ = ("key", "secret", "previous_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_KEY_FIELD_NUMBER: _ClassVar[int]
    key: _resources_pb2.Key
    secret: str
    previous_key: _resources_pb2.Key
    def __init__(self, key: _Optional[_Union[_resources_pb2.Key, _Mapping]] = ..., secret: _Optional[str] = ..., previous_key: _Optional[_Union[_resources_pb2.Key, _Mapping]] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("key_id", "reason")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    reason: str
    def __init__(self, key_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _resources_pb2.Key
    def __init__(self, key: _Optional[_Union[_resources_pb2.Key, _Mapping]] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("key", "exposure")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    key: _resources_pb2.Key
    exposure: _audit_pb2.KeyExposure
    def __init__(self, key: _Optional[_Union[_resources_pb2.Key, _Mapping]] = ..., exposure: _Optional[_Union[_audit_pb2.KeyExposure, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("workspace_id", "page_size", "page_token")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    page_size: int
    page_token: str
    def __init__(self, workspace_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys", "next_page_token")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Key]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[_Union[_resources_pb2.Key, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
