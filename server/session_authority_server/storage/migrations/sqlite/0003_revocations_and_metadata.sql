-- Client metadata and last refresh, for "active sessions" pages.
ALTER TABLE sessions ADD COLUMN last_refreshed_ms INTEGER;
ALTER TABLE sessions ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN device TEXT NOT NULL DEFAULT '';

-- Listing a user's sessions newest first, page by page, from the index alone.
CREATE INDEX sessions_by_user_created ON sessions (user_id, created_ms, handle);

-- Every revocation, in commit order, for verifiers watching the stream. Kept for
-- one access-token lifetime (after that no revoked session's token is valid).
CREATE TABLE revocations (
    cursor        INTEGER PRIMARY KEY AUTOINCREMENT,
    handle        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL
);

CREATE INDEX revocations_by_time ON revocations (revoked_at_ms);
