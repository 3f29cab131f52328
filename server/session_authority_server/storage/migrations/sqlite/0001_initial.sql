-- Sessions: one row each. A row past expires_ms is treated as gone at once and
-- purged later. Only SHA-256 hashes of refresh-token secrets are stored.
CREATE TABLE sessions (
    handle               TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL,
    tenant_id            TEXT NOT NULL,
    refresh_hash         BLOB NOT NULL,
    prev_refresh_hash    BLOB,
    rotated_at_ms        INTEGER,
    access_token_payload TEXT NOT NULL,
    session_data         TEXT NOT NULL,
    created_ms           INTEGER NOT NULL,
    expires_ms           INTEGER NOT NULL,
    absolute_expires_ms  INTEGER
) WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id, expires_ms);

CREATE INDEX sessions_by_expiry ON sessions (expires_ms);

-- Signing keys shared by every replica. kid is d-<created_ms>.
CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL,
    private_key   BLOB NOT NULL,
    created_ms    INTEGER NOT NULL,
    signs_from_ms INTEGER NOT NULL
);

-- Server secrets (the refresh-token MAC key), created once on first start.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
