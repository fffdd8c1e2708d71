-- Files and the durable active-file table of the embedded catalog.

CREATE TABLE files (
    -- Insertion order: listing is "oldest first" by this key.
    pk           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The public, stable id of the file (UUID text).
    id           TEXT    NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL CHECK (user_id > 0),
    file_name    TEXT    NOT NULL,
    storage_uri  TEXT    NOT NULL,
    storage_type TEXT    NOT NULL DEFAULT 'local' CHECK (storage_type IN ('local')),
    description  TEXT    NOT NULL,
    summary      TEXT    NOT NULL,
    format       TEXT    NOT NULL,
    size_bytes   INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    row_count    INTEGER NOT NULL,
    column_count INTEGER NOT NULL,
    profile      TEXT    NOT NULL,
    -- pending: reserved by an upload whose bytes are not in place yet (invisible);
    -- ready: visible; deleting: delete in progress (invisible). Startup recovery
    -- finishes or undoes pending and deleting rows after a crash.
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'ready', 'deleting')),
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    -- Names are unique per user; the database enforces it, even for concurrent uploads.
    UNIQUE (user_id, file_name)
);

CREATE INDEX idx_files_user_id ON files (user_id, pk);

-- One active file per (user, session); durable, so a cache miss or restart loses nothing.
CREATE TABLE active_files (
    user_id    INTEGER NOT NULL,
    session_id TEXT    NOT NULL,
    file_pk    INTEGER NOT NULL REFERENCES files (pk) ON DELETE CASCADE,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, session_id)
);

CREATE INDEX idx_active_files_file ON active_files (file_pk);
