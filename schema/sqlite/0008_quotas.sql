-- Per-user quota overrides set by `file-service quota set`. A NULL limit is the configured
-- default (QUOTA_BYTES, QUOTA_FILES); -1 is no limit. Usage is not stored: it is counted
-- from the user's files when an upload is reserved.
CREATE TABLE quotas (
    user_id   INTEGER PRIMARY KEY,
    max_bytes INTEGER CHECK (max_bytes >= -1),
    max_files INTEGER CHECK (max_files >= -1)
);
