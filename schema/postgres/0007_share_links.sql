-- Share links: a file's bytes for anyone who holds a link's secret, until the link expires,
-- is revoked, reaches `max_downloads` (NULL: no limit) or its file's content changes. Only
-- the secret's SHA-256 is kept. `sha256` is the file's content when the link was made: the
-- link serves that content only. A file's links go with its row.
CREATE TABLE share_links (
    id            uuid        PRIMARY KEY,
    secret_sha256 text        NOT NULL UNIQUE,
    file_id       uuid        NOT NULL REFERENCES files (public_id) ON DELETE CASCADE,
    user_id       bigint      NOT NULL,
    sha256        text        NOT NULL,
    max_downloads bigint      CHECK (max_downloads > 0),
    downloads     bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX idx_share_links_file ON share_links (file_id);
CREATE INDEX idx_share_links_expires ON share_links (expires_at);
