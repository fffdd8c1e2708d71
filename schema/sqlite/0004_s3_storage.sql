-- Records may say storage_type 's3' (issue 18). SQLite cannot alter a CHECK constraint,
-- and rebuilding `files` would cascade into active_files, so the table's definition is
-- edited in place (SQLite's documented procedure for a change every stored row already
-- satisfies); the migration runner then bumps schema_version so every connection reloads it.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (storage_type IN (''local''))', 'CHECK (storage_type IN (''local'', ''s3''))')
 WHERE type = 'table' AND name = 'files';
