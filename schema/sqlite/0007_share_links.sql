-- Share links: a file's bytes for anyone who holds a link's secret, until the link expires,
-- is revoked, reaches `max_downloads` (NULL: no limit) or its file's content changes. Only
-- the secret's SHA-256 is kept. `sha256` is the file's content when the link was made: the
-- link serves that content only. A file's links go with its row (times as RFC 3339 UTC text).
CREATE TABLE share_links (
    id            TEXT    PRIMARY KEY,
    secret_sha256 TEXT    NOT NULL UNIQUE,
    file_id       TEXT    NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    max_downloads INTEGER CHECK (max_downloads > 0),
    downloads     INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL,
    expires_at    TEXT    NOT NULL
);
CREATE INDEX idx_share_links_file ON share_links (file_id);
CREATE INDEX idx_share_links_expires ON share_links (expires_at);
