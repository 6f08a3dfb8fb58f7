import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TestCredentialKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEST_CREDENTIAL_KIND_UNSPECIFIED: _ClassVar[TestCredentialKind]
    TEST_CREDENTIAL_KIND_BEARER_TOKEN: _ClassVar[TestCredentialKind]
    TEST_CREDENTIAL_KIND_API_KEY: _ClassVar[TestCredentialKind]
    TEST_CREDENTIAL_KIND_BASIC_AUTH: _ClassVar[TestCredentialKind]
    TEST_CREDENTIAL_KIND_OAUTH_CLIENT_SECRET: _ClassVar[TestCredentialKind]
    TEST_CREDENTIAL_KIND_OTHER: _ClassVar[TestCredentialKind]
TEST_CREDENTIAL_KIND_UNSPECIFIED: TestCredentialKind
TEST_CREDENTIAL_KIND_BEARER_TOKEN: TestCredentialKind
TEST_CREDENTIAL_KIND_API_KEY: TestCredentialKind
TEST_CREDENTIAL_KIND_BASIC_AUTH: TestCredentialKind
TEST_CREDENTIAL_KIND_OAUTH_CLIENT_SECRET: TestCredentialKind
TEST_CREDENTIAL_KIND_OTHER: TestCredentialKind

class TestCredential(_message.Message):
    __slots__ = ("credential_id", "workspace_id", "name", "kind", "target_base_url", "create_time", "update_time", "created_by", "updated_by", "reveal_count", "last_reveal_time", "kek_id")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    REVEAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_REVEAL_TIME_FIELD_NUMBER: _ClassVar[int]
    KEK_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    workspace_id: str
    name: str
    kind: TestCredentialKind
    target_base_url: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    created_by: str
    updated_by: str
    reveal_count: int
    last_reveal_time: _timestamp_pb2.Timestamp
    kek_id: str
    def __init__(self, credential_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[TestCredentialKind, str]] = ..., target_base_url: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., updated_by: _Optional[str] = ..., reveal_count: _Optional[int] = ..., last_reveal_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kek_id: _Optional[str] = ...) -> None: ...

class PutTestCredentialRequest(_message.Message):
    __slots__ = ("workspace_id", "name", "kind", "secret_material", "target_base_url")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SECRET_MATERIAL_FIELD_NUMBER: _ClassVar[int]
    TARGET_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    name: str
    kind: TestCredentialKind
    secret_material: str
    target_base_url: str
    def __init__(self, workspace_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[TestCredentialKind, str]] = ..., secret_material: _Optional[str] = ..., target_base_url: _Optional[str] = ...) -> None: ...

class PutTestCredentialResponse(_message.Message):
    __slots__ = ("credential", "created")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    credential: TestCredential
    created: bool
    def __init__(self, credential: _Optional[_Union[TestCredential, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetTestCredentialRequest(_message.Message):
    __slots__ = ("workspace_id", "credential_id")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    credential_id: str
    def __init__(self, workspace_id: _Optional[str] = ..., credential_id: _Optional[str] = ...) -> None: ...

class GetTestCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: TestCredential
    def __init__(self, credential: _Optional[_Union[TestCredential, _Mapping]] = ...) -> None: ...

class ListTestCredentialsRequest(_message.Message):
    __slots__ = ("workspace_id", "page_size", "page_token")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    page_size: int
    page_token: str
    def __init__(self, workspace_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTestCredentialsResponse(_message.Message):
    __slots__ = ("credentials", "next_page_token")
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[TestCredential]
    next_page_token: str
    def __init__(self, credentials: _Optional[_Iterable[_Union[TestCredential, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteTestCredentialRequest(_message.Message):
    __slots__ = ("workspace_id", "credential_id")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    credential_id: str
    def __init__(self, workspace_id: _Optional[str] = ..., credential_id: _Optional[str] = ...) -> None: ...

class DeleteTestCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: TestCredential
    def __init__(self, credential: _Optional[_Union[TestCredential, _Mapping]] = ...) -> None: ...

class RevealTestCredentialRequest(_message.Message):
    __slots__ = ("workspace_id", "credential_id", "reason")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    credential_id: str
    reason: str
    def __init__(self, workspace_id: _Optional[str] = ..., credential_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevealTestCredentialResponse(_message.Message):
    __slots__ = ("credential", "secret_material")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    SECRET_MATERIAL_FIELD_NUMBER: _ClassVar[int]
    credential: TestCredential
    secret_material: str
    def __init__(self, credential: _Optional[_Union[TestCredential, _Mapping]] = ..., secret_material: _Optional[str] = ...) -> None: ...
