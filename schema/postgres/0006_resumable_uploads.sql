-- Resumable (tus) uploads: what the client announced at creation, how far its bytes got,
-- and the stored parts that hold them. `holder` is the process receiving a request's
-- bytes for the upload, or completing it.
CREATE TABLE resumable_uploads (
    id           uuid        PRIMARY KEY,
    user_id      bigint      NOT NULL,
    file_name    text        NOT NULL,
    session_id   uuid        NOT NULL,
    description  text        NOT NULL,
    filename     text        NOT NULL,
    metadata     text        NOT NULL,
    length       bigint      NOT NULL,
    offset_bytes bigint      NOT NULL DEFAULT 0,
    parts        text        NOT NULL DEFAULT '[]',
    state        text        NOT NULL DEFAULT 'receiving',
    error        text,
    holder       text,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
-- An unfinished upload claims its name among the user's unfinished uploads.
CREATE UNIQUE INDEX idx_resumable_uploads_name ON resumable_uploads (user_id, file_name)
    WHERE state IN ('receiving', 'completing');
CREATE INDEX idx_resumable_uploads_expires ON resumable_uploads (expires_at);
