import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditEvent(_message.Message):
    __slots__ = ("id", "time", "actor", "action", "outcome", "key_id", "workspace_id", "request_id", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    time: _timestamp_pb2.Timestamp
    actor: str
    action: str
    outcome: str
    key_id: str
    workspace_id: str
    request_id: str
    detail: str
    def __init__(self, id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., outcome: _Optional[str] = ..., key_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., request_id: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("workspace_id", "key_id", "action", "start_time", "end_time", "page_size", "page_token")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    key_id: str
    action: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, workspace_id: _Optional[str] = ..., key_id: _Optional[str] = ..., action: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class KeyExposure(_message.Message):
    __slots__ = ("exposed", "first_exposed_time", "last_exposed_time", "seen_at", "auto_revoked")
    EXPOSED_FIELD_NUMBER: _ClassVar[int]
    FIRST_EXPOSED_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_EXPOSED_TIME_FIELD_NUMBER: _ClassVar[int]
    SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    AUTO_REVOKED_FIELD_NUMBER: _ClassVar[int]
    exposed: bool
    first_exposed_time: _timestamp_pb2.Timestamp
    last_exposed_time: _timestamp_pb2.Timestamp
    seen_at: str
    auto_revoked: bool
    def __init__(self, exposed: _Optional[bool] = ..., first_exposed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_exposed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seen_at: _Optional[str] = ..., auto_revoked: _Optional[bool] = ...) -> None: ...

class WorkspaceSettings(_message.Message):
    __slots__ = ("workspace_id", "auto_revoke_exposed", "update_time", "updated_by")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    AUTO_REVOKE_EXPOSED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    auto_revoke_exposed: bool
    update_time: _timestamp_pb2.Timestamp
    updated_by: str
    def __init__(self, workspace_id: _Optional[str] = ..., auto_revoke_exposed: _Optional[bool] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ...) -> None: ...

class GetWorkspaceSettingsRequest(_message.Message):
    __slots__ = ("workspace_id",)
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    def __init__(self, workspace_id: _Optional[str] = ...) -> None: ...

class GetWorkspaceSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: WorkspaceSettings
    def __init__(self, settings: _Optional[_Union[WorkspaceSettings, _Mapping]] = ...) -> None: ...

class UpdateWorkspaceSettingsRequest(_message.Message):
    __slots__ = ("workspace_id", "auto_revoke_exposed")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    AUTO_REVOKE_EXPOSED_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    auto_revoke_exposed: bool
    def __init__(self, workspace_id: _Optional[str] = ..., auto_revoke_exposed: _Optional[bool] = ...) -> None: ...

class UpdateWorkspaceSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: WorkspaceSettings
    def __init__(self, settings: _Optional[_Union[WorkspaceSettings, _Mapping]] = ...) -> None: ...
