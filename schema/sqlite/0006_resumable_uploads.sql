-- Resumable (tus) uploads: what the client announced at creation, how far its bytes got,
-- and the stored parts that hold them (times as RFC 3339 UTC text). `holder` is the
-- process receiving a request's bytes for the upload, or completing it.
CREATE TABLE resumable_uploads (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL,
    file_name    TEXT    NOT NULL,
    session_id   TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    filename     TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    length       INTEGER NOT NULL,
    offset_bytes INTEGER NOT NULL DEFAULT 0,
    parts        TEXT    NOT NULL DEFAULT '[]',
    state        TEXT    NOT NULL DEFAULT 'receiving',
    error        TEXT,
    holder       TEXT,
    created_at   TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL
);
-- An unfinished upload claims its name among the user's unfinished uploads.
CREATE UNIQUE INDEX idx_resumable_uploads_name ON resumable_uploads (user_id, file_name)
    WHERE state IN ('receiving', 'completing');
CREATE INDEX idx_resumable_uploads_expires ON resumable_uploads (expires_at);
