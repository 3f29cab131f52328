-- Sessions: one row each. A row past expires_ms is treated as gone at once and
-- purged later. Only SHA-256 hashes of refresh-token secrets are stored. JSON is
-- kept as text so that it round-trips byte for byte (jsonb reorders keys).
CREATE TABLE sessions (
    handle               TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL,
    tenant_id            TEXT NOT NULL,
    refresh_hash         BYTEA NOT NULL,
    prev_refresh_hash    BYTEA,
    rotated_at_ms        BIGINT,
    access_token_payload TEXT NOT NULL,
    session_data         TEXT NOT NULL,
    created_ms           BIGINT NOT NULL,
    expires_ms           BIGINT NOT NULL,
    absolute_expires_ms  BIGINT
);

CREATE INDEX sessions_by_user ON sessions (user_id, expires_ms);

CREATE INDEX sessions_by_expiry ON sessions (expires_ms);

-- Signing keys shared by every replica. kid is d-<created_ms>.
CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL,
    private_key   BYTEA NOT NULL,
    created_ms    BIGINT NOT NULL,
    signs_from_ms BIGINT NOT NULL
);

-- Server secrets (the refresh-token MAC key), created once on first start.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
