"""The signing-key ring: dynamic keys ``d-<created_ms>`` kept in the database.

Schedule: a key signs from ``signs_from_ms``. A successor is created
``publish_lead`` before the current key has signed for ``rotation``, and is in
the JWKS from then on, so caches learn it before any token uses it. A key stays
in the JWKS while a token it signed can be valid: until its successor took over
plus the access-token validity.

Keys are parsed once when the ring loads. The hot path (``signer``) is one
integer comparison; the ring reloads from the database only when the schedule
says something changes, or (rate-limited) when a token names an unknown kid.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from session_authority.verify import ALGORITHMS, VerificationKey

from .clock import Clock
from .sealing import SecretSealer
from .storage.base import KeyStorage, SigningKeyRow

log = logging.getLogger(__name__)

# Clock skew tolerated between replicas and verifiers: when retiring keys, and
# when deciding that no token of a revoked session can still be valid.
CLOCK_SKEW_MS = 60_000
_UNKNOWN_KID_RELOAD_COOLDOWN_MS = 5_000
_JWK_PUBLIC_FIELDS = ("kty", "crv", "n", "e", "x", "y")


def generate_private_key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {algorithm!r}")


def private_key_pem(key: Any) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm_name: str
    private_key: Any
    public: VerificationKey
    jwk: dict[str, str]
    created_ms: int
    signs_from_ms: int

    @classmethod
    def from_row(cls, row: SigningKeyRow, sealer: SecretSealer) -> SigningKey:
        algorithm = ALGORITHMS[row.algorithm]
        pem = sealer.open(row.private_key, row.kid)
        private = serialization.load_pem_private_key(pem, password=None)
        public = private.public_key()
        exported = algorithm.to_jwk(public, as_dict=True)
        jwk = {name: exported[name] for name in _JWK_PUBLIC_FIELDS if name in exported}
        jwk.update(kid=row.kid, alg=row.algorithm, use="sig")
        return cls(
            kid=row.kid,
            algorithm_name=row.algorithm,
            private_key=private,
            public=VerificationKey(row.kid, row.algorithm, algorithm, public),
            jwk=jwk,
            created_ms=row.created_ms,
            signs_from_ms=row.signs_from_ms,
        )


class KeyRing:
    def __init__(
        self,
        store: KeyStorage,
        clock: Clock,
        *,
        algorithm: str,
        rotation_ms: int,
        access_token_validity_ms: int,
        sealer: SecretSealer,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._clock = clock
        self._algorithm = algorithm
        self._rotation_ms = rotation_ms
        # Publish a successor this long before it signs (at most an hour).
        self._publish_lead_ms = min(rotation_ms // 4, 3_600_000)
        self._access_validity_ms = access_token_validity_ms
        self._keys: list[SigningKey] = []  # ordered by signs_from_ms
        self._by_kid: dict[str, SigningKey] = {}
        self._signer: SigningKey | None = None
        self._static: SigningKey | None = None
        self._next_event_ms = 0  # when the signer changes or a rotation falls due
        self._last_unknown_kid_reload_ms = -_UNKNOWN_KID_RELOAD_COOLDOWN_MS
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        now = self._clock.now_ms()
        # Open what is stored before anything is written: a missing or wrong master
        # key must stop the start without adding a key sealed wrongly (or not at all).
        existing = await self._store.signing_keys()
        if existing:
            self._adopt(existing, now)
        await self._sync(now)
        self._static = SigningKey.from_row(
            await self._store.static_signing_key(self._new_static_key_row), self._sealer
        )

    @property
    def static_key(self) -> SigningKey:
        """The never-rotated key s-<uuid> that signs CreateJWT tokens by default."""
        assert self._static is not None, "KeyRing.start() was not awaited"
        return self._static

    async def signer(self) -> SigningKey:
        """The key that signs now; creates or adopts a successor when one is due."""
        now = self._clock.now_ms()
        if now >= self._next_event_ms or self._signer is None:
            async with self._lock:
                if now >= self._next_event_ms or self._signer is None:
                    await self._sync(now)
        assert self._signer is not None
        return self._signer

    def verification_key(self, kid: str) -> VerificationKey | None:
        """A dynamic key by kid. The static key is deliberately absent: it signs
        CreateJWT tokens, which must never pass as access tokens."""
        key = self._by_kid.get(kid)
        return key.public if key is not None else None

    async def verification_key_reloading(self, kid: str) -> VerificationKey | None:
        """As verification_key, but an unknown kid reloads the ring from the
        database (another replica may have rotated) at most once per cooldown."""
        key = self.verification_key(kid)
        if key is not None:
            return key
        now = self._clock.now_ms()
        if now - self._last_unknown_kid_reload_ms < _UNKNOWN_KID_RELOAD_COOLDOWN_MS:
            return None
        self._last_unknown_kid_reload_ms = now
        async with self._lock:
            self._adopt(await self._store.signing_keys(), now)
        return self.verification_key(kid)

    async def jwks(self) -> tuple[list[dict[str, str]], int]:
        """(JWKs that can verify a live token, seconds a verifier may cache them).
        A rotation that fell due is carried out first, so the set is never stale."""
        await self.signer()
        now = self._clock.now_ms()
        published = [key.jwk for key in self._keys if not self._retired(key, now)]
        if self._static is not None:
            published.append(self._static.jwk)
        # The next unpublished key starts signing one rotation after the newest key.
        newest = self._keys[-1].signs_from_ms if self._keys else now
        max_age_s = max(1, (newest + self._rotation_ms - now) // 1000)
        return published, max_age_s

    def retired_kids(self) -> list[str]:
        """Dynamic keys that no live token can have been signed with."""
        now = self._clock.now_ms()
        return [key.kid for key in self._keys if self._retired(key, now)]

    def _retired(self, key: SigningKey, now: int) -> bool:
        """A key retires once its successor has signed for a whole access-token
        validity (plus skew): every token it signed has expired by then."""
        later = [k.signs_from_ms for k in self._keys if k.signs_from_ms > key.signs_from_ms]
        taken_over = min(later, default=None)
        if taken_over is None or taken_over > now:
            return False
        return now >= taken_over + self._access_validity_ms + CLOCK_SKEW_MS

    async def _sync(self, now: int) -> None:
        """Create the first key or a due successor (one writer wins), then adopt."""
        rows = await self._store.add_signing_key(lambda keys: self._due_key(keys, now))
        self._adopt(rows, now)

    def _due_key(self, rows: list[SigningKeyRow], now: int) -> SigningKeyRow | None:
        if not rows:
            return self._new_key_row(now, signs_from_ms=now)
        newest = rows[-1]
        if newest.algorithm != self._algorithm:
            # The configured algorithm changed: switch now; verifiers fetch the
            # unknown kid on first sight.
            return self._new_key_row(now, signs_from_ms=now)
        if now >= newest.signs_from_ms + self._rotation_ms - self._publish_lead_ms:
            return self._new_key_row(now, signs_from_ms=now + self._publish_lead_ms)
        return None

    def _new_key_row(self, now: int, *, signs_from_ms: int) -> SigningKeyRow:
        kid = f"d-{now}"
        sealed = self._sealer.seal(private_key_pem(generate_private_key(self._algorithm)), kid)
        log.info("created signing key %s (%s)", kid, self._algorithm)
        return SigningKeyRow(kid, self._algorithm, sealed, now, signs_from_ms)

    def _new_static_key_row(self) -> SigningKeyRow:
        now = self._clock.now_ms()
        kid = f"s-{uuid.uuid4()}"
        sealed = self._sealer.seal(private_key_pem(generate_private_key(self._algorithm)), kid)
        return SigningKeyRow(kid, self._algorithm, sealed, now, now)

    def _adopt(self, rows: list[SigningKeyRow], now: int) -> None:
        keys = []
        for row in sorted(rows, key=lambda r: (r.signs_from_ms, r.created_ms)):
            known = self._by_kid.get(row.kid)
            keys.append(known if known is not None else SigningKey.from_row(row, self._sealer))
        self._keys = keys
        self._by_kid = {key.kid: key for key in keys}
        signing = [key for key in keys if key.signs_from_ms <= now]
        self._signer = signing[-1] if signing else keys[0]
        newest = keys[-1]
        upcoming = [key.signs_from_ms for key in keys if key.signs_from_ms > now]
        due = newest.signs_from_ms + self._rotation_ms - self._publish_lead_ms
        self._next_event_ms = min([due, *upcoming])
