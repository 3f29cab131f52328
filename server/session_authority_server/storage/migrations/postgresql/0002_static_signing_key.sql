-- The static key s-<uuid> that signs CreateJWT tokens by default. Never rotated.
CREATE TABLE static_signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);
