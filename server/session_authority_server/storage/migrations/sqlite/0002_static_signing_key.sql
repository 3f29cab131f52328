-- The static key s-<uuid> that signs CreateJWT tokens by default. Never rotated.
CREATE TABLE static_signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);
