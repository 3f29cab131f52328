"""Session claims and their validators, with SuperTokens' semantics.

A claim's value lives in the access-token payload as ``{key: {"v": value, "t":
fetched_ms}}``. The built-in validators are declarative (:class:`ClaimValidator`:
claim key, kind, expected value, max age, id), so the same object can travel
over gRPC and be evaluated by the same code on the authority and in the client.
A custom validator is any object with ``id`` and ``validate(payload, now_ms)``
(plus ``claim`` and ``should_refetch(payload, now_ms)`` if it can refetch); it
runs in the client only.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import ClaimValidationError, InvalidArgumentError
from .verify import PROTECTED_CLAIMS

T = TypeVar("T")

HAS_VALUE = "has_value"
INCLUDES = "includes"
EXCLUDES = "excludes"
INCLUDES_ALL = "includes_all"
INCLUDES_ANY = "includes_any"
EXCLUDES_ALL = "excludes_all"

# kind -> the reason key that names what was expected (SuperTokens' wording).
_EXPECTED_KEY = {
    HAS_VALUE: "expectedValue",
    INCLUDES: "expectedToInclude",
    EXCLUDES: "expectedToNotInclude",
    INCLUDES_ALL: "expectedToInclude",
    INCLUDES_ANY: "expectedToIncludeAtLeastOneOf",
    EXCLUDES_ALL: "expectedToNotInclude",
}
VALIDATOR_KINDS = tuple(_EXPECTED_KEY)
_LIST_KINDS = (INCLUDES_ALL, INCLUDES_ANY, EXCLUDES_ALL)

MAX_CLAIM_KEY_LENGTH = 128
_MAX_SAFE_MS = 2**53  # NaN fails the range check too

FetchValue = Callable[[str, dict[str, Any]], Any]


def check_claim_key(key: object, field_name: str = "claim_key") -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError("a claim key must be a non-empty string", field=field_name)
    if len(key) > MAX_CLAIM_KEY_LENGTH:
        raise InvalidArgumentError(
            f"a claim key is at most {MAX_CLAIM_KEY_LENGTH} characters", field=field_name
        )
    if "\0" in key:  # PostgreSQL text cannot hold it: one rule for every store
        raise InvalidArgumentError("a claim key must not contain U+0000", field=field_name)
    if key in PROTECTED_CLAIMS:
        raise InvalidArgumentError(f"{key!r} is a protected claim", field=field_name)
    return key


def claim_entry(value: Any, fetched_ms: int) -> dict[str, Any]:
    """How a claim value is stored in the payload."""
    return {"v": value, "t": fetched_ms}


def read_claim(payload: Mapping[str, Any], key: str) -> tuple[bool, Any, int | None]:
    """(present, value, fetched_ms) of a claim in a payload."""
    entry = payload.get(key)
    if not isinstance(entry, dict) or "v" not in entry or entry["v"] is None:
        return False, None, None
    fetched = entry.get("t")
    # A time stamp must be a plausible number of ms; anything else counts as none.
    if (
        isinstance(fetched, bool)
        or not isinstance(fetched, int | float)
        or not -_MAX_SAFE_MS <= fetched <= _MAX_SAFE_MS
    ):
        return True, entry["v"], None
    return True, entry["v"], int(fetched)


# Stand-ins that make true and false differ from 1 and 0 (as in JavaScript), and
# mark containers so that no list or object key equals a scalar.
_TRUE, _FALSE, _LIST, _OBJECT = object(), object(), object(), object()


def json_key(value: Any) -> Hashable:
    """A hashable stand-in for a JSON value: two values have equal keys exactly
    when they are equal as JSON (true is not 1, 1 is 1.0, an object's key order
    does not matter). Claim checks compare keys, so a list check costs one pass
    over each list instead of one comparison per pair of elements."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, list):
        return (_LIST, tuple(json_key(item) for item in value))
    if isinstance(value, dict):
        return (_OBJECT, frozenset((key, json_key(item)) for key, item in value.items()))
    key: Hashable = value  # str, int, float, None: Python's == and hash agree with JSON
    return key


class _KeyCache:
    """Keys of claim values, computed once per call: many validators of one call
    may look at the same (large) claim value."""

    def __init__(self) -> None:
        # id -> (the value, kept alive so its id stays its own; its key; its items' keys)
        self._keys: dict[int, tuple[Any, Hashable, frozenset[Hashable] | None]] = {}

    def _entry(self, value: Any) -> tuple[Any, Hashable, frozenset[Hashable] | None]:
        entry = self._keys.get(id(value))
        if entry is None:
            key = json_key(value)
            items = frozenset(key[1]) if isinstance(value, list) else None  # type: ignore[index]
            entry = self._keys[id(value)] = (value, key, items)
        return entry

    def key(self, value: Any) -> Hashable:
        return self._entry(value)[1]

    def item_keys(self, value: Any) -> frozenset[Hashable]:
        """The keys of a list's items; a value that is not a list has none."""
        return self._entry(value)[2] or frozenset()


def _matches(validator: ClaimValidator, actual: Any, keys: _KeyCache) -> bool:
    kind = validator.kind
    if kind == HAS_VALUE:
        return keys.key(actual) == validator.expected_key
    present = keys.item_keys(actual)  # a list check of a non-list sees an empty list
    if kind == INCLUDES:
        return validator.expected_key in present
    if kind == EXCLUDES:
        return validator.expected_key not in present
    expected = validator.expected_keys
    if kind == INCLUDES_ALL:
        return expected <= present
    if kind == INCLUDES_ANY:
        return not expected.isdisjoint(present)
    return expected.isdisjoint(present)  # EXCLUDES_ALL


def _now_ms(now_ms: int | None) -> int:
    return now_ms if now_ms is not None else time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ClaimValidator:
    """A built-in, declarative claim validator."""

    claim_key: str
    kind: str
    value: Any
    max_age_in_seconds: int | None = None
    id: str = ""
    # The claim that can refetch the value; a validator from the wire has none.
    claim: SessionClaim[Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_claim_key(self.claim_key)
        if self.kind not in VALIDATOR_KINDS:
            raise InvalidArgumentError(
                f"unknown validator kind {self.kind!r}; one of {', '.join(VALIDATOR_KINDS)}",
                field="kind",
            )
        if self.kind in _LIST_KINDS and not isinstance(self.value, list):
            raise InvalidArgumentError(f"{self.kind} takes a list of values", field="value")
        if self.max_age_in_seconds is not None and (
            isinstance(self.max_age_in_seconds, bool)
            or not isinstance(self.max_age_in_seconds, int)
            or self.max_age_in_seconds < 0
        ):
            raise InvalidArgumentError(
                "max_age_in_seconds must be a non-negative whole number", field="max_age_seconds"
            )
        if not isinstance(self.id, str) or len(self.id) > MAX_CLAIM_KEY_LENGTH or "\0" in self.id:
            raise InvalidArgumentError(
                f"a validator id is a string of at most {MAX_CLAIM_KEY_LENGTH} characters "
                "without U+0000",
                field="id",
            )
        if not self.id:
            object.__setattr__(self, "id", self.claim_key)

    def should_refetch(self, payload: Mapping[str, Any], now_ms: int | None = None) -> bool:
        present, _, fetched = read_claim(payload, self.claim_key)
        if not present:
            return True
        if self.max_age_in_seconds is None or fetched is None:
            return False
        return fetched < _now_ms(now_ms) - self.max_age_in_seconds * 1000

    @functools.cached_property
    def expected_key(self) -> Hashable:
        return json_key(self.value)

    @functools.cached_property
    def expected_keys(self) -> frozenset[Hashable]:
        return frozenset(json_key(item) for item in self.value)

    def validate(
        self,
        payload: Mapping[str, Any],
        now_ms: int | None = None,
        *,
        keys: _KeyCache | None = None,
    ) -> dict[str, Any]:
        """``{"is_valid": bool, "reason": dict | None}``, with SuperTokens' reasons.
        Validators run together share ``keys``, so each claim value is read once."""
        expected_key = _EXPECTED_KEY[self.kind]
        present, actual, fetched = read_claim(payload, self.claim_key)
        if not present:
            reason = {"message": "value does not exist", expected_key: self.value}
            return {"is_valid": False, "reason": reason}
        if self.max_age_in_seconds is not None and fetched is not None:
            age = (_now_ms(now_ms) - fetched) / 1000
            if age > self.max_age_in_seconds:
                reason = {
                    "message": "expired",
                    "ageInSeconds": age,
                    "maxAgeInSeconds": self.max_age_in_seconds,
                }
                return {"is_valid": False, "reason": reason}
        if not _matches(self, actual, keys or _KeyCache()):
            reason = {"message": "wrong value", expected_key: self.value, "actualValue": actual}
            return {"is_valid": False, "reason": reason}
        return {"is_valid": True, "reason": None}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ClaimValidator:
        unknown = set(spec) - {"claim", "kind", "value", "max_age_seconds", "id"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown validator fields: {', '.join(sorted(unknown))}", field="validator"
            )
        kind = spec.get("kind")
        # The kind first: a misspelt one must be named as such, not as a missing value.
        kinds = (*VALIDATOR_KINDS, "is_true", "is_false")
        if kind not in kinds:
            raise InvalidArgumentError(
                f"unknown validator kind {kind!r}; one of {', '.join(kinds)}", field="kind"
            )
        if kind in ("is_true", "is_false"):  # BooleanClaim's shorthands
            return cls(
                spec.get("claim", ""),
                HAS_VALUE,
                kind == "is_true",
                spec.get("max_age_seconds"),
                spec.get("id", ""),
            )
        if "value" not in spec:
            raise InvalidArgumentError("a validator needs a value", field="value")
        return cls(
            spec.get("claim", ""),
            str(kind),
            spec["value"],
            spec.get("max_age_seconds"),
            spec.get("id", ""),
        )


@dataclass(frozen=True, slots=True)
class ClaimValidationResult:
    """What validate_claims returns."""

    invalid_claims: list[ClaimValidationError]
    access_token_payload_update: dict[str, Any] | None


class SessionClaim(Generic[T]):
    """A value kept in the session's access-token payload, with a fetch function
    (sync or async) that computes it for a user. A fetch returning None means
    "do not set"."""

    def __init__(
        self,
        key: str,
        fetch_value: FetchValue,
        default_max_age_in_seconds: int | None = None,
    ) -> None:
        self.key = check_claim_key(key, "key")
        self.fetch_value = fetch_value
        self.default_max_age_in_seconds = default_max_age_in_seconds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    async def fetch(self, user_id: str, access_token_payload: dict[str, Any]) -> T | None:
        value = self.fetch_value(user_id, access_token_payload)
        if inspect.isawaitable(value):
            value = await value
        return value  # type: ignore[no-any-return]

    async def build(
        self, user_id: str, access_token_payload: dict[str, Any], now_ms: int | None = None
    ) -> dict[str, Any]:
        """The payload update that sets a freshly fetched value ({} if None)."""
        value = await self.fetch(user_id, access_token_payload)
        if value is None:
            return {}
        return {self.key: claim_entry(value, _now_ms(now_ms))}

    def add_to_payload(
        self, payload: Mapping[str, Any], value: T, now_ms: int | None = None
    ) -> dict[str, Any]:
        return {**payload, self.key: claim_entry(value, _now_ms(now_ms))}

    def get_value_from_payload(self, payload: Mapping[str, Any]) -> T | None:
        present, value, _ = read_claim(payload, self.key)
        return value if present else None

    def _validator(
        self, kind: str, value: Any, max_age_in_seconds: int | None, id: str | None
    ) -> ClaimValidator:
        max_age = (
            max_age_in_seconds
            if max_age_in_seconds is not None
            else self.default_max_age_in_seconds
        )
        return ClaimValidator(self.key, kind, value, max_age, id or self.key, claim=self)


class _PrimitiveValidators:
    def __init__(self, claim: SessionClaim[Any]) -> None:
        self._claim = claim

    def has_value(
        self, value: Any, max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self._claim._validator(HAS_VALUE, value, max_age_in_seconds, id)


class _ArrayValidators:
    def __init__(self, claim: SessionClaim[Any]) -> None:
        self._claim = claim

    def includes(
        self, value: Any, max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self._claim._validator(INCLUDES, value, max_age_in_seconds, id)

    def excludes(
        self, value: Any, max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self._claim._validator(EXCLUDES, value, max_age_in_seconds, id)

    def includes_all(
        self, values: Sequence[Any], max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self._claim._validator(INCLUDES_ALL, list(values), max_age_in_seconds, id)

    def includes_any(
        self, values: Sequence[Any], max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self._claim._validator(INCLUDES_ANY, list(values), max_age_in_seconds, id)

    def excludes_all(
        self, values: Sequence[Any], max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self._claim._validator(EXCLUDES_ALL, list(values), max_age_in_seconds, id)


class _BooleanValidators(_PrimitiveValidators):
    def is_true(
        self, max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self.has_value(True, max_age_in_seconds, id)

    def is_false(
        self, max_age_in_seconds: int | None = None, id: str | None = None
    ) -> ClaimValidator:
        return self.has_value(False, max_age_in_seconds, id)


class PrimitiveClaim(SessionClaim[T]):
    """A single JSON value (string, number, ...). Validator: ``has_value``."""

    def __init__(
        self, key: str, fetch_value: FetchValue, default_max_age_in_seconds: int | None = None
    ) -> None:
        super().__init__(key, fetch_value, default_max_age_in_seconds)
        self.validators = _PrimitiveValidators(self)


class PrimitiveArrayClaim(SessionClaim[list[Any]]):
    """A list of JSON values (roles, permissions, ...)."""

    def __init__(
        self, key: str, fetch_value: FetchValue, default_max_age_in_seconds: int | None = None
    ) -> None:
        super().__init__(key, fetch_value, default_max_age_in_seconds)
        self.validators = _ArrayValidators(self)


class BooleanClaim(SessionClaim[bool]):
    """A boolean (email verified, MFA done, ...). Validators: ``is_true``, ``is_false``."""

    def __init__(
        self, key: str, fetch_value: FetchValue, default_max_age_in_seconds: int | None = None
    ) -> None:
        super().__init__(key, fetch_value, default_max_age_in_seconds)
        self.validators = _BooleanValidators(self)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def failures_of(
    validators: Sequence[ClaimValidator], payload: Mapping[str, Any], now_ms: int
) -> list[ClaimValidationError]:
    """Run built-in validators (synchronous; what the authority runs)."""
    failures = []
    keys = _KeyCache()
    for validator in validators:
        result = validator.validate(payload, now_ms, keys=keys)
        if not result["is_valid"]:
            failures.append(ClaimValidationError(validator.id, result["reason"]))
    return failures


async def validate_all(
    validators: Sequence[Any], payload: Mapping[str, Any], now_ms: int
) -> list[ClaimValidationError]:
    """Run every validator, built-in or custom (whose validate may be async)."""
    failures = []
    keys = _KeyCache()
    for validator in validators:
        if isinstance(validator, ClaimValidator):
            result = validator.validate(payload, now_ms, keys=keys)
        else:
            result = await _maybe_await(validator.validate(payload, now_ms))
        if not result.get("is_valid"):
            failures.append(ClaimValidationError(validator.id, result.get("reason")))
    return failures


async def refetch_updates(
    validators: Sequence[Any], user_id: str, payload: dict[str, Any], now_ms: int
) -> dict[str, Any]:
    """Fetch the claims whose validators say they should refetch; the payload update."""
    update: dict[str, Any] = {}
    for validator in validators:
        claim = getattr(validator, "claim", None)
        should_refetch = getattr(validator, "should_refetch", None)
        if claim is None or should_refetch is None or claim.key in update:
            continue
        if await _maybe_await(should_refetch(payload, now_ms)):
            update.update(await claim.build(user_id, payload, now_ms))
    return update
