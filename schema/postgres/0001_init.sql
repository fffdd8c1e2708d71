-- Files and the durable active-file table of the PostgreSQL catalog.
--
-- `files` is the original design's table (same name, columns, enum type and index
-- names), widened where the original was too small (user ids are 64-bit; ids BIGSERIAL)
-- and extended with what the embedded catalog keeps. A client of the original schema
-- still finds every column it used, with a compatible type.

CREATE TYPE storage_type AS ENUM ('local');

CREATE TABLE files (
    -- The original's SERIAL key; insertion order, so listing "oldest first" sorts on it.
    id           BIGSERIAL    PRIMARY KEY,
    file_name    VARCHAR      NOT NULL,
    storage_uri  VARCHAR      NOT NULL,
    description  TEXT         NOT NULL,
    summary      TEXT         NOT NULL,
    storage_type storage_type NOT NULL DEFAULT 'local',
    user_id      BIGINT       NOT NULL CHECK (user_id > 0),
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- Added: the public, stable id of the file (the `id` of the HTTP API).
    public_id    UUID         NOT NULL UNIQUE,
    format       TEXT         NOT NULL,
    size_bytes   BIGINT       NOT NULL CHECK (size_bytes >= 0),
    sha256       TEXT         NOT NULL,
    row_count    BIGINT       NOT NULL CHECK (row_count >= 0),
    column_count BIGINT       NOT NULL CHECK (column_count >= 0),
    -- The analysis profile, JSON kept as written (TEXT, not JSONB, so it reads back byte for byte).
    profile      TEXT         NOT NULL,
    -- pending: reserved by an upload whose bytes are not in place yet (invisible);
    -- ready: visible; deleting: delete in progress (invisible). Startup recovery
    -- finishes or undoes pending and deleting rows after a crash.
    state        TEXT         NOT NULL CHECK (state IN ('pending', 'ready', 'deleting')),
    updated_at   TIMESTAMPTZ  NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_files_user_id ON files (user_id);
-- The original's index, made UNIQUE: names are unique per user and the database
-- enforces it, even between concurrent uploads on different replicas.
CREATE UNIQUE INDEX idx_files_user_filename ON files (user_id, file_name);

-- One active file per (user, session); durable, so a cache miss or restart loses nothing.
CREATE TABLE active_files (
    user_id    BIGINT      NOT NULL,
    session_id UUID        NOT NULL,
    file_id    BIGINT      NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, session_id)
);

CREATE INDEX idx_active_files_file ON active_files (file_id);
