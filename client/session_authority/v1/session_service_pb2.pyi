import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClaimValidatorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLAIM_VALIDATOR_KIND_UNSPECIFIED: _ClassVar[ClaimValidatorKind]
    CLAIM_VALIDATOR_KIND_HAS_VALUE: _ClassVar[ClaimValidatorKind]
    CLAIM_VALIDATOR_KIND_INCLUDES: _ClassVar[ClaimValidatorKind]
    CLAIM_VALIDATOR_KIND_EXCLUDES: _ClassVar[ClaimValidatorKind]
    CLAIM_VALIDATOR_KIND_INCLUDES_ALL: _ClassVar[ClaimValidatorKind]
    CLAIM_VALIDATOR_KIND_INCLUDES_ANY: _ClassVar[ClaimValidatorKind]
    CLAIM_VALIDATOR_KIND_EXCLUDES_ALL: _ClassVar[ClaimValidatorKind]
CLAIM_VALIDATOR_KIND_UNSPECIFIED: ClaimValidatorKind
CLAIM_VALIDATOR_KIND_HAS_VALUE: ClaimValidatorKind
CLAIM_VALIDATOR_KIND_INCLUDES: ClaimValidatorKind
CLAIM_VALIDATOR_KIND_EXCLUDES: ClaimValidatorKind
CLAIM_VALIDATOR_KIND_INCLUDES_ALL: ClaimValidatorKind
CLAIM_VALIDATOR_KIND_INCLUDES_ANY: ClaimValidatorKind
CLAIM_VALIDATOR_KIND_EXCLUDES_ALL: ClaimValidatorKind

class ClientMetadata(_message.Message):
    __slots__ = ("ip", "user_agent", "device")
    IP_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ip: str
    user_agent: str
    device: str
    def __init__(self, ip: _Optional[str] = ..., user_agent: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token", "expire_time", "create_time")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    token: str
    expire_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_handle", "user_id", "tenant_id", "access_token_payload")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    user_id: str
    tenant_id: str
    access_token_payload: _struct_pb2.Struct
    def __init__(self, session_handle: _Optional[str] = ..., user_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., access_token_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SessionInformation(_message.Message):
    __slots__ = ("session_handle", "user_id", "tenant_id", "session_data_in_database", "expire_time", "custom_claims_in_access_token_payload", "create_time")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_DATA_IN_DATABASE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_CLAIMS_IN_ACCESS_TOKEN_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    user_id: str
    tenant_id: str
    session_data_in_database: _struct_pb2.Struct
    expire_time: _timestamp_pb2.Timestamp
    custom_claims_in_access_token_payload: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, session_handle: _Optional[str] = ..., user_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., session_data_in_database: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., custom_claims_in_access_token_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ClaimValidator(_message.Message):
    __slots__ = ("id", "claim_key", "kind", "value", "max_age")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    claim_key: str
    kind: ClaimValidatorKind
    value: _struct_pb2.Value
    max_age: _duration_pb2.Duration
    def __init__(self, id: _Optional[str] = ..., claim_key: _Optional[str] = ..., kind: _Optional[_Union[ClaimValidatorKind, str]] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimValidatorList(_message.Message):
    __slots__ = ("validators",)
    VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    validators: _containers.RepeatedCompositeFieldContainer[ClaimValidator]
    def __init__(self, validators: _Optional[_Iterable[_Union[ClaimValidator, _Mapping]]] = ...) -> None: ...

class ClaimValidationError(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: _struct_pb2.Value
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class InvalidClaims(_message.Message):
    __slots__ = ("invalid_claims",)
    INVALID_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    invalid_claims: _containers.RepeatedCompositeFieldContainer[ClaimValidationError]
    def __init__(self, invalid_claims: _Optional[_Iterable[_Union[ClaimValidationError, _Mapping]]] = ...) -> None: ...

class CreateNewSessionRequest(_message.Message):
    __slots__ = ("user_id", "access_token_payload", "session_data_in_database", "disable_anti_csrf", "client_metadata")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SESSION_DATA_IN_DATABASE_FIELD_NUMBER: _ClassVar[int]
    DISABLE_ANTI_CSRF_FIELD_NUMBER: _ClassVar[int]
    CLIENT_METADATA_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    access_token_payload: _struct_pb2.Struct
    session_data_in_database: _struct_pb2.Struct
    disable_anti_csrf: bool
    client_metadata: ClientMetadata
    def __init__(self, user_id: _Optional[str] = ..., access_token_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_data_in_database: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., disable_anti_csrf: _Optional[bool] = ..., client_metadata: _Optional[_Union[ClientMetadata, _Mapping]] = ...) -> None: ...

class CreateNewSessionResponse(_message.Message):
    __slots__ = ("session", "access_token", "refresh_token", "anti_csrf_token")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANTI_CSRF_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session: Session
    access_token: Token
    refresh_token: Token
    anti_csrf_token: str
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., access_token: _Optional[_Union[Token, _Mapping]] = ..., refresh_token: _Optional[_Union[Token, _Mapping]] = ..., anti_csrf_token: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("access_token", "anti_csrf_token", "anti_csrf_check", "check_database", "override_global_claim_validators")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANTI_CSRF_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANTI_CSRF_CHECK_FIELD_NUMBER: _ClassVar[int]
    CHECK_DATABASE_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_GLOBAL_CLAIM_VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    anti_csrf_token: str
    anti_csrf_check: bool
    check_database: bool
    override_global_claim_validators: ClaimValidatorList
    def __init__(self, access_token: _Optional[str] = ..., anti_csrf_token: _Optional[str] = ..., anti_csrf_check: _Optional[bool] = ..., check_database: _Optional[bool] = ..., override_global_claim_validators: _Optional[_Union[ClaimValidatorList, _Mapping]] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session", "access_token")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session: Session
    access_token: Token
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., access_token: _Optional[_Union[Token, _Mapping]] = ...) -> None: ...

class RefreshSessionRequest(_message.Message):
    __slots__ = ("refresh_token", "anti_csrf_token", "disable_anti_csrf")
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANTI_CSRF_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DISABLE_ANTI_CSRF_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    anti_csrf_token: str
    disable_anti_csrf: bool
    def __init__(self, refresh_token: _Optional[str] = ..., anti_csrf_token: _Optional[str] = ..., disable_anti_csrf: _Optional[bool] = ...) -> None: ...

class RefreshSessionResponse(_message.Message):
    __slots__ = ("session", "access_token", "refresh_token", "anti_csrf_token")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANTI_CSRF_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session: Session
    access_token: Token
    refresh_token: Token
    anti_csrf_token: str
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., access_token: _Optional[_Union[Token, _Mapping]] = ..., refresh_token: _Optional[_Union[Token, _Mapping]] = ..., anti_csrf_token: _Optional[str] = ...) -> None: ...

class RevokeSessionRequest(_message.Message):
    __slots__ = ("session_handle",)
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    def __init__(self, session_handle: _Optional[str] = ...) -> None: ...

class RevokeSessionResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    def __init__(self, revoked: _Optional[bool] = ...) -> None: ...

class RevokeAllSessionsForUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class RevokeAllSessionsForUserResponse(_message.Message):
    __slots__ = ("revoked_session_handles",)
    REVOKED_SESSION_HANDLES_FIELD_NUMBER: _ClassVar[int]
    revoked_session_handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revoked_session_handles: _Optional[_Iterable[str]] = ...) -> None: ...

class RevokeMultipleSessionsRequest(_message.Message):
    __slots__ = ("session_handles",)
    SESSION_HANDLES_FIELD_NUMBER: _ClassVar[int]
    session_handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_handles: _Optional[_Iterable[str]] = ...) -> None: ...

class RevokeMultipleSessionsResponse(_message.Message):
    __slots__ = ("revoked_session_handles",)
    REVOKED_SESSION_HANDLES_FIELD_NUMBER: _ClassVar[int]
    revoked_session_handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revoked_session_handles: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAllSessionHandlesForUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetAllSessionHandlesForUserResponse(_message.Message):
    __slots__ = ("session_handles",)
    SESSION_HANDLES_FIELD_NUMBER: _ClassVar[int]
    session_handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_handles: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSessionInformationRequest(_message.Message):
    __slots__ = ("session_handle",)
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    def __init__(self, session_handle: _Optional[str] = ...) -> None: ...

class GetSessionInformationResponse(_message.Message):
    __slots__ = ("session_information",)
    SESSION_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    session_information: SessionInformation
    def __init__(self, session_information: _Optional[_Union[SessionInformation, _Mapping]] = ...) -> None: ...

class UpdateSessionDataInDatabaseRequest(_message.Message):
    __slots__ = ("session_handle", "new_session_data")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    NEW_SESSION_DATA_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    new_session_data: _struct_pb2.Struct
    def __init__(self, session_handle: _Optional[str] = ..., new_session_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpdateSessionDataInDatabaseResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: bool
    def __init__(self, updated: _Optional[bool] = ...) -> None: ...

class MergeIntoAccessTokenPayloadRequest(_message.Message):
    __slots__ = ("session_handle", "access_token_payload_update")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_PAYLOAD_UPDATE_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    access_token_payload_update: _struct_pb2.Struct
    def __init__(self, session_handle: _Optional[str] = ..., access_token_payload_update: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class MergeIntoAccessTokenPayloadResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: bool
    def __init__(self, updated: _Optional[bool] = ...) -> None: ...

class RegenerateAccessTokenRequest(_message.Message):
    __slots__ = ("access_token", "new_access_token_payload")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEW_ACCESS_TOKEN_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    new_access_token_payload: _struct_pb2.Struct
    def __init__(self, access_token: _Optional[str] = ..., new_access_token_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RegenerateAccessTokenResponse(_message.Message):
    __slots__ = ("session_exists", "session", "access_token")
    SESSION_EXISTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_exists: bool
    session: Session
    access_token: Token
    def __init__(self, session_exists: _Optional[bool] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., access_token: _Optional[_Union[Token, _Mapping]] = ...) -> None: ...

class SetClaimValueRequest(_message.Message):
    __slots__ = ("session_handle", "claim_key", "value")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    CLAIM_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    claim_key: str
    value: _struct_pb2.Value
    def __init__(self, session_handle: _Optional[str] = ..., claim_key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class SetClaimValueResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: bool
    def __init__(self, updated: _Optional[bool] = ...) -> None: ...

class GetClaimValueRequest(_message.Message):
    __slots__ = ("session_handle", "claim_key")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    CLAIM_KEY_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    claim_key: str
    def __init__(self, session_handle: _Optional[str] = ..., claim_key: _Optional[str] = ...) -> None: ...

class GetClaimValueResponse(_message.Message):
    __slots__ = ("session_exists", "value")
    SESSION_EXISTS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    session_exists: bool
    value: _struct_pb2.Value
    def __init__(self, session_exists: _Optional[bool] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class RemoveClaimRequest(_message.Message):
    __slots__ = ("session_handle", "claim_key")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    CLAIM_KEY_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    claim_key: str
    def __init__(self, session_handle: _Optional[str] = ..., claim_key: _Optional[str] = ...) -> None: ...

class RemoveClaimResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: bool
    def __init__(self, updated: _Optional[bool] = ...) -> None: ...

class ValidateClaimsRequest(_message.Message):
    __slots__ = ("access_token_payload", "claim_validators")
    ACCESS_TOKEN_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CLAIM_VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    access_token_payload: _struct_pb2.Struct
    claim_validators: _containers.RepeatedCompositeFieldContainer[ClaimValidator]
    def __init__(self, access_token_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., claim_validators: _Optional[_Iterable[_Union[ClaimValidator, _Mapping]]] = ...) -> None: ...

class ValidateClaimsResponse(_message.Message):
    __slots__ = ("invalid_claims",)
    INVALID_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    invalid_claims: _containers.RepeatedCompositeFieldContainer[ClaimValidationError]
    def __init__(self, invalid_claims: _Optional[_Iterable[_Union[ClaimValidationError, _Mapping]]] = ...) -> None: ...

class ValidateClaimsInJwtPayloadRequest(_message.Message):
    __slots__ = ("jwt_payload", "claim_validators")
    JWT_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CLAIM_VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    jwt_payload: _struct_pb2.Struct
    claim_validators: _containers.RepeatedCompositeFieldContainer[ClaimValidator]
    def __init__(self, jwt_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., claim_validators: _Optional[_Iterable[_Union[ClaimValidator, _Mapping]]] = ...) -> None: ...

class ValidateClaimsInJwtPayloadResponse(_message.Message):
    __slots__ = ("invalid_claims",)
    INVALID_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    invalid_claims: _containers.RepeatedCompositeFieldContainer[ClaimValidationError]
    def __init__(self, invalid_claims: _Optional[_Iterable[_Union[ClaimValidationError, _Mapping]]] = ...) -> None: ...

class GetGlobalClaimValidatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGlobalClaimValidatorsResponse(_message.Message):
    __slots__ = ("claim_validators",)
    CLAIM_VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    claim_validators: _containers.RepeatedCompositeFieldContainer[ClaimValidator]
    def __init__(self, claim_validators: _Optional[_Iterable[_Union[ClaimValidator, _Mapping]]] = ...) -> None: ...

class CreateJwtRequest(_message.Message):
    __slots__ = ("payload", "validity", "use_static_signing_key")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    USE_STATIC_SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    payload: _struct_pb2.Struct
    validity: _duration_pb2.Duration
    use_static_signing_key: bool
    def __init__(self, payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., validity: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., use_static_signing_key: _Optional[bool] = ...) -> None: ...

class CreateJwtResponse(_message.Message):
    __slots__ = ("jwt",)
    JWT_FIELD_NUMBER: _ClassVar[int]
    jwt: str
    def __init__(self, jwt: _Optional[str] = ...) -> None: ...

class JsonWebKey(_message.Message):
    __slots__ = ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")
    KTY_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    E_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    kty: str
    kid: str
    alg: str
    use: str
    n: str
    e: str
    crv: str
    x: str
    y: str
    def __init__(self, kty: _Optional[str] = ..., kid: _Optional[str] = ..., alg: _Optional[str] = ..., use: _Optional[str] = ..., n: _Optional[str] = ..., e: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., y: _Optional[str] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("keys", "max_age")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[JsonWebKey]
    max_age: _duration_pb2.Duration
    def __init__(self, keys: _Optional[_Iterable[_Union[JsonWebKey, _Mapping]]] = ..., max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetOpenIdDiscoveryConfigurationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetOpenIdDiscoveryConfigurationResponse(_message.Message):
    __slots__ = ("issuer", "jwks_uri", "document")
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    issuer: str
    jwks_uri: str
    document: _struct_pb2.Struct
    def __init__(self, issuer: _Optional[str] = ..., jwks_uri: _Optional[str] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("session_handle", "user_id", "revoke_time", "cursor", "access_tokens_expire_time")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKENS_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    user_id: str
    revoke_time: _timestamp_pb2.Timestamp
    cursor: int
    access_tokens_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_handle: _Optional[str] = ..., user_id: _Optional[str] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cursor: _Optional[int] = ..., access_tokens_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("after_cursor",)
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    after_cursor: int
    def __init__(self, after_cursor: _Optional[int] = ...) -> None: ...

class WatchRevocationsResponse(_message.Message):
    __slots__ = ("revocations", "cursor")
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    revocations: _containers.RepeatedCompositeFieldContainer[Revocation]
    cursor: int
    def __init__(self, revocations: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ..., cursor: _Optional[int] = ...) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_handle", "user_id", "client_metadata", "create_time", "last_refresh_time", "expire_time")
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_REFRESH_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    user_id: str
    client_metadata: ClientMetadata
    create_time: _timestamp_pb2.Timestamp
    last_refresh_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_handle: _Optional[str] = ..., user_id: _Optional[str] = ..., client_metadata: _Optional[_Union[ClientMetadata, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_refresh_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token", "total_size")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionSummary]
    next_page_token: str
    total_size: int
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class RevokeOtherSessionsRequest(_message.Message):
    __slots__ = ("session_handle",)
    SESSION_HANDLE_FIELD_NUMBER: _ClassVar[int]
    session_handle: str
    def __init__(self, session_handle: _Optional[str] = ...) -> None: ...

class RevokeOtherSessionsResponse(_message.Message):
    __slots__ = ("revoked_session_handles",)
    REVOKED_SESSION_HANDLES_FIELD_NUMBER: _ClassVar[int]
    revoked_session_handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revoked_session_handles: _Optional[_Iterable[str]] = ...) -> None: ...
