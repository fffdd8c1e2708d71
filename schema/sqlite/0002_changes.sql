-- Sync (issue 9): versions of each file, the change feed, the instance's identity and
-- the checkpoints of other instances that pushed to this one.

-- A file's version: `rev` is new on every change, `rev_history` lists the earlier revs
-- (JSON array, newest first, capped), `origin` is the instance the version was made on.
ALTER TABLE files ADD COLUMN rev         TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN rev_history TEXT NOT NULL DEFAULT '[]';
ALTER TABLE files ADD COLUMN origin      TEXT NOT NULL DEFAULT '';

-- This catalog's identity and its change counter (one row). The counter is bumped inside
-- the transaction of each change, so sequence numbers are handed out in commit order.
CREATE TABLE instance (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    instance_id TEXT    NOT NULL,
    last_seq    INTEGER NOT NULL
);
INSERT INTO instance (singleton, instance_id, last_seq) VALUES (1, lower(hex(randomblob(16))), 0);

-- The change feed: one row per file, at the sequence number of its latest change (a file
-- changed three times since a reader's last visit is read once, as in CouchDB).
CREATE TABLE changes (
    file_id   TEXT    PRIMARY KEY,
    seq       INTEGER NOT NULL UNIQUE,
    user_id   INTEGER NOT NULL,
    op        TEXT    NOT NULL CHECK (op IN ('upsert', 'delete')),
    -- The instance the change was made on: readers skip their own changes (no echo).
    origin    TEXT    NOT NULL,
    -- For deletes: the deleted version (JSON), so later stale copies are recognised.
    tombstone TEXT
);
CREATE INDEX idx_changes_user_seq ON changes (user_id, seq);

-- How far this instance has applied the feed of each other instance.
CREATE TABLE sync_checkpoints (
    source     TEXT    PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);

-- Files that existed before this migration: a first version and a feed entry each.
UPDATE files SET rev = lower(hex(randomblob(16))), origin = (SELECT instance_id FROM instance);
INSERT INTO changes (file_id, seq, user_id, op, origin)
    SELECT id, ROW_NUMBER() OVER (ORDER BY pk), user_id, 'upsert', origin FROM files WHERE state = 'ready';
UPDATE instance SET last_seq = (SELECT COUNT(*) FROM changes);
